// natctl's library entry: typed config parsing, pure renderers and the controller.
export { parseConfigText, parseConfigObject, loadConfigFile, decodeConfigBytes } from './config/load.js';
export { configSchema, configJsonSchema } from './config/schema.js';
export type { Config, ConfigInput, NetworkConfig, MappingConfig, SnatRuleConfig, BlockRuleConfig, Proto } from './config/schema.js';
export { parsePublish, type PublishSpec } from './config/publish.js';
export { buildModel } from './model/build.js';
export type * from './model/model.js';
export { renderNftDocument, renderNftFlush, tableFamily, tableName } from './backends/nft/render.js';
export { documentToText } from './backends/nft/text.js';
export type { NftDocument } from './backends/nft/json.js';
export type { Backend, BackendName, Delta, LiveState, MappingCounters, Ruleset } from './backends/backend.js';
export { NftBackend } from './backends/nft/backend.js';
export { describeNftTransport, type NftTransport, type NftResult } from './backends/nft/transport.js';
export { nativeBindingStatus, type NativeBindingStatus } from './backends/native.js';
export { FakeBackend, fakeWithoutDeltas, type FakeDeltaFault } from './backends/fake.js';
export { createBackend, backendChoices, type BackendChoice, type BackendOptions } from './backends/factory.js';
export { BackendFailure, type FailureKind, failureKind, isNotFound, isExists, isPermission, isBusy } from './backends/failure.js';
export { IptablesBackend, type IptablesBackendOptions } from './backends/iptables/backend.js';
export { renderIptablesRules, type IptablesRender } from './backends/iptables/render.js';
export { Controller, configHash, type ControllerOptions, type ApplyOptions, type ApplyKind, type ApplyResult, type MappingChange, type StatusReport, type MappingStatus, type Drift } from './engine/controller.js';
export { MappingIndex, buildMappingsAgainst, mappingsConflict } from './model/build.js';
export type { Plan, Change } from './engine/plan.js';
export type { Generation } from './engine/state.js';
export * from './errors.js';

import { buildModel } from './model/build.js';
import { parseConfigObject } from './config/load.js';
import { renderNftDocument } from './backends/nft/render.js';
import { documentToText } from './backends/nft/text.js';
import type { Config, ConfigInput } from './config/schema.js';
import { parseConfigText } from './config/load.js';
import type { NftDocument } from './backends/nft/json.js';
import { renderIptablesRules, renderText as renderIptablesText } from './backends/iptables/render.js';

/** parseConfig of docs/contract.md §5: YAML/JSON text, or an already-parsed value, to a validated config. */
export function parseConfig(input: string | ConfigInput | unknown): Config {
  return typeof input === 'string' ? parseConfigText(input) : parseConfigObject(input);
}

/** Config (parsed or typed) -> the nftables JSON batch natctl would load. Pure. */
export function renderNft(config: ConfigInput | unknown): NftDocument {
  return renderNftDocument(buildModel(parseConfigObject(config)));
}

/** Same, in nft's text syntax. */
export function renderNftText(config: ConfigInput | unknown): string {
  return documentToText(renderNft(config));
}

/**
 * Config (parsed or typed) -> the iptables-legacy restore input natctl would load: nat and
 * filter for IPv4, then IPv6, each under a `#` line naming its command. Pure.
 */
export function renderIptables(config: ConfigInput | unknown): string {
  return renderIptablesText(renderIptablesRules(buildModel(parseConfigObject(config))));
}
