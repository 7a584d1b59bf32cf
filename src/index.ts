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
export type { Backend, BackendName, LiveState, MappingCounters, Ruleset } from './backends/backend.js';
export { NftBackend } from './backends/nft/backend.js';
export { describeNftTransport, type NftTransport, type NftResult } from './backends/nft/transport.js';
export { nativeBindingStatus, type NativeBindingStatus } from './backends/native.js';
export { FakeBackend } from './backends/fake.js';
export { Controller, type ControllerOptions, type ApplyResult, type StatusReport, type MappingStatus, type Drift } from './engine/controller.js';
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

/** DESIGN §5's parseConfig: YAML/JSON text, or an already-parsed value, to a validated config. */
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
