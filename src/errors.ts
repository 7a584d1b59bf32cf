// Every error natctl raises on purpose, in one place. Each carries the CLI exit code
// that docs/contract.md §4 binds to it, so the CLI never has to guess.

export const ExitCode = {
  ok: 0,
  applyFailed: 1,
  invalidInput: 2,
  environment: 3,
  locked: 4,
  rollbackFailed: 5,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export abstract class NatctlError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One problem in a config: where it is and what was found there. */
export interface ConfigProblem {
  /** JSON-path-like location, e.g. `mappings[2].hostPort`. */
  path: string;
  message: string;
}

/** The input (config file, flag, argument) is invalid. The kernel was not touched. */
export class ConfigError extends NatctlError {
  readonly exitCode = ExitCode.invalidInput;
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map((p) => (p.path ? `${p.path}: ${p.message}` : p.message)).join('\n'));
  }
  static at(path: string, message: string): ConfigError {
    return new ConfigError([{ path, message }]);
  }
}

/** Wrong usage of the CLI or library (unknown generation, bad flag value). */
export class UsageError extends NatctlError {
  readonly exitCode = ExitCode.invalidInput;
}

/** The host cannot do what was asked: not root, no nft, no kernel support, no such netns. */
export class EnvironmentError extends NatctlError {
  readonly exitCode = ExitCode.environment;
}

/** Another apply holds the state lock. */
export class LockError extends NatctlError {
  readonly exitCode = ExitCode.locked;
  constructor(message: string, readonly holderPid: number | undefined) {
    super(message);
  }
}

/**
 * An apply failed. `rolledBack` is true when the previous ruleset is back in the kernel
 * (verified); the CLI exits 1.
 */
export class ApplyError extends NatctlError {
  readonly exitCode = ExitCode.applyFailed;
  constructor(message: string, readonly rolledBack: boolean, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Restoring the previous ruleset failed: the host needs an operator. */
export class RollbackError extends NatctlError {
  readonly exitCode = ExitCode.rollbackFailed;
}

/**
 * A backend command (nft, iptables) failed outside an apply, e.g. while `status` reads or
 * `flush` removes the table: the host's tooling or kernel refused, so exit 3 (environment).
 * An apply catches it and reports an ApplyError or RollbackError instead.
 * `commandExitCode` is the command's own exit status; `exitCode` is natctl's.
 */
export class BackendCommandError extends NatctlError {
  readonly exitCode = ExitCode.environment;
  constructor(
    readonly command: string,
    readonly commandExitCode: number | undefined,
    readonly stderr: string,
  ) {
    super(`${command} failed${commandExitCode === undefined ? '' : ` (exit ${commandExitCode})`}: ${stderr.trim() || 'no output'}`);
  }
}
