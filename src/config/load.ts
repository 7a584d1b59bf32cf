// Reading a config: bytes -> text -> document -> schema -> model. Every failure is a
// ConfigError naming where and what, never a stack trace; nothing here touches the kernel.
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { z } from 'zod';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { buildModel } from '../model/build.js';
import type { Model } from '../model/model.js';
import { findDuplicateJsonKey } from './json-keys.js';
import { type Config, configSchema } from './schema.js';
import { loadConfigDirectory } from './fragments.js';

/** Larger than any sane config (10,000 mappings is ~1 MiB of YAML); refuses accidents early. */
export const maxConfigBytes = 16 * 1024 * 1024;
const maxDepth = 32;

export function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, key) => (typeof key === 'number' ? `${out}[${key}]` : out ? `${out}.${String(key)}` : String(key)), '');
}

function valueAt(document: unknown, path: readonly PropertyKey[]): unknown {
  let current: unknown = document;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

function describeValue(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return 'missing';
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function zodProblems(error: z.ZodError, document: unknown): ConfigProblem[] {
  return error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return { path: formatPath(issue.path), message: `unknown field(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` };
    }
    const value = valueAt(document, issue.path);
    const found = value === undefined ? 'is missing' : `got ${describeValue(value)}`;
    return { path: formatPath(issue.path), message: `${issue.message} (${found})` };
  });
}

/**
 * The yaml library, loaded on the first YAML text: a JSON config (what agents write) never
 * pays its ~60 ms of imports (docs/performance.md, "CLI start-up and the front end"). It is
 * CommonJS, so a synchronous require keeps parseConfigText synchronous.
 */
let yamlLibrary: typeof import('yaml') | undefined;
const yaml = (): typeof import('yaml') => (yamlLibrary ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));

function depthOf(value: unknown, depth = 0): number {
  if (depth > maxDepth) return depth;
  if (value === null || typeof value !== 'object') return depth;
  let deepest = depth;
  for (const child of Object.values(value)) deepest = Math.max(deepest, depthOf(child, depth + 1));
  return deepest;
}

/** Parses config text (YAML or JSON) into a validated config. `source` names it in errors. */
export function parseConfigText(text: string, source = 'config'): Config {
  let document: unknown;
  try {
    const trimmed = text.trimStart();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
      document = JSON.parse(text);
      const duplicate = findDuplicateJsonKey(text);
      if (duplicate) throw new Error(`duplicate key ${JSON.stringify(duplicate.key)}${duplicate.path ? ` in ${duplicate.path}` : ''}: a key may appear once per object`);
    } else {
      // logLevel silent: the library must not print; its errors and warnings become ours.
      const parsed = yaml().parseDocument(text, { prettyErrors: true, uniqueKeys: true, logLevel: 'silent' });
      const problem = parsed.errors[0] ?? parsed.warnings[0];
      if (problem) throw new Error(problem.message);
      document = parsed.toJS({ maxAliasCount: 100 });
    }
  } catch (error) {
    const reason = error instanceof RangeError ? 'is nested too deeply' : `is not valid YAML or JSON: ${(error as Error).message.split('\n')[0]}`;
    throw ConfigError.at('', `${source} ${reason}`);
  }
  if (depthOf(document) > maxDepth) throw ConfigError.at('', `${source} is nested deeper than ${maxDepth} levels; a natctl config never is`);
  return parseConfigObject(document);
}

/** Validates an already-parsed document (the library's entry for typed callers). */
export function parseConfigObject(document: unknown): Config {
  if (document === null || typeof document !== 'object' || Array.isArray(document)) {
    throw ConfigError.at('', `a config must be a mapping with "version: 1" at the top (got ${describeValue(document)})`);
  }
  const result = configSchema.safeParse(document);
  if (!result.success) throw new ConfigError(zodProblems(result.error, document));
  return result.data;
}

/** Decodes bytes as UTF-8, refusing binary and invalid encodings with a clear message. */
export function decodeConfigBytes(bytes: Uint8Array, source: string): string {
  if (bytes.length > maxConfigBytes) throw ConfigError.at('', `${source} is ${bytes.length} bytes; the limit is ${maxConfigBytes}`);
  if (bytes.includes(0)) throw ConfigError.at('', `${source} is binary (it contains NUL bytes), not a YAML or JSON config`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw ConfigError.at('', `${source} is not valid UTF-8 text`);
  }
}

export async function loadConfigFile(file: string): Promise<Config> {
  let size: number;
  try {
    const info = await stat(file);
    if (info.isDirectory()) return await loadConfigDirectory(file); // a drop-in directory: src/config/fragments.ts
    if (!info.isFile()) throw ConfigError.at('', `${file} is not a regular file`);
    size = info.size;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw ConfigError.at('', `cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (size > maxConfigBytes) throw ConfigError.at('', `${file} is ${size} bytes; the limit is ${maxConfigBytes}`);
  const bytes = await readFile(file);
  return parseConfigText(decodeConfigBytes(bytes, file), file);
}

/** Config file -> model, the whole front end in one call. */
export async function loadModelFile(file: string): Promise<{ config: Config; model: Model }> {
  const config = await loadConfigFile(file);
  return { config, model: buildModel(config) };
}
