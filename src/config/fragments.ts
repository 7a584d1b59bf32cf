// A directory of config fragments (docs/config.md, "A directory of fragments"): every
// `*.yaml`, `*.yml` and `*.json` in it is one fragment, and together they are one config.
// This is the interface for agents in any language: one file per workload, written atomically
// (write a hidden temp file, rename it into place), removed when the workload goes.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, type ConfigProblem } from '../errors.js';
import { buildModel } from '../model/build.js';
import { decodeConfigBytes, maxConfigBytes, parseConfigText } from './load.js';
import type { Config } from './schema.js';

/**
 * A fragment's file name: not hidden (editors' and atomic writers' temp files, and Kubernetes'
 * `..data` of a mounted ConfigMap, start with a dot) and ending in .yaml, .yml or .json (so
 * `web.yaml.tmp`, `web.yaml~` and `web.yaml.dpkg-old` are not fragments either).
 */
export const fragmentNamePattern = /^[^.].*\.(ya?ml|json)$/;

export const isFragmentName = (name: string): boolean => fragmentNamePattern.test(name);

const sections = ['networks', 'mappings', 'snat', 'block'] as const;
type Section = (typeof sections)[number];

/** Where each entry of the merged config came from: section -> merged index -> [file, index in the file]. */
type Origins = Record<Section, [string, number][]>;

function prefixed(problems: ConfigProblem[], file: string): ConfigProblem[] {
  return problems.map((p) => (p.path ? { path: `${file}: ${p.path}`, message: p.message } : p.message.includes(file) ? p : { path: file, message: p.message }));
}

/** Rewrites `mappings[12]` (an index in the merged config) to `FILE mappings[3]` everywhere in a problem. */
function locate(problem: ConfigProblem, origins: Origins): ConfigProblem {
  const rewrite = (text: string, path: boolean): string =>
    text.replace(/\b(networks|mappings|snat|block)\[(\d+)\]/g, (whole, section: Section, index: string) => {
      const origin = origins[section][Number(index)];
      if (!origin) return whole;
      return path ? `${origin[0]}: ${section}[${origin[1]}]` : `${origin[0]} ${section}[${origin[1]}]`;
    });
  return { path: rewrite(problem.path, true), message: rewrite(problem.message, false) };
}

/** Reads one fragment: a config of its own, `version: 1` required (see docs/config.md). */
async function readFragment(file: string): Promise<Config> {
  let bytes: Buffer;
  try {
    const info = await stat(file);
    if (info.size > maxConfigBytes) throw ConfigError.at(file, `is ${info.size} bytes; the limit is ${maxConfigBytes}`);
    bytes = await readFile(file);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw ConfigError.at(file, `cannot read it: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    return parseConfigText(decodeConfigBytes(bytes, file), file);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(prefixed(error.problems, file));
    throw error;
  }
}

/** The fragment files of `dir`, sorted by name (the merge order). */
export async function listFragments(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    throw ConfigError.at('', `cannot read directory ${dir}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const files: string[] = [];
  for (const name of names.filter(isFragmentName).sort()) {
    // Follows symlinks (a mounted ConfigMap's keys are symlinks into `..data/`); a subdirectory is not a fragment.
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (info?.isDirectory()) continue;
    files.push(join(dir, name));
  }
  return files;
}

/**
 * Reads every fragment of `dir` and merges them into one config, in file-name order. Problems
 * name the file (and both files of a conflict); all problems of all fragments are reported at once.
 * An empty directory is a valid, empty config.
 */
export async function loadConfigDirectory(dir: string): Promise<Config> {
  const files = await listFragments(dir);
  const problems: ConfigProblem[] = [];
  const merged: Required<Omit<Config, 'version'>> = { networks: [], mappings: [], snat: [], block: [] };
  const origins: Origins = { networks: [], mappings: [], snat: [], block: [] };
  for (const file of files) {
    let fragment: Config;
    try {
      fragment = await readFragment(file);
    } catch (error) {
      if (error instanceof ConfigError) {
        for (const problem of error.problems) problems.push(problem); // not push(...): a fragment may hold 100,000s
        continue;
      }
      throw error;
    }
    for (const section of sections) {
      (fragment[section] ?? []).forEach((entry, index) => {
        origins[section].push([file, index]);
        (merged[section] as unknown[]).push(entry);
      });
    }
  }
  if (problems.length) throw new ConfigError(problems);
  const config: Config = { version: 1 };
  for (const section of sections) if (merged[section].length) (config as Record<Section, unknown[]>)[section] = merged[section];
  try {
    buildModel(config);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(error.problems.map((p) => locate(p, origins)));
    throw error;
  }
  return config;
}
