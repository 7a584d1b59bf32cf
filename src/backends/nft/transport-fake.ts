// A scripted nft for unit tests of the nft backend itself: each call takes the next scripted
// answer (in order), and every call is recorded, so a test states what the backend sends and
// what it makes of nft's answers (refusals, a missing table, no permission) without a kernel.
import type { NftResult, NftTransport } from './transport.js';

export type NftCall =
  | { op: 'run'; batch: string; check: boolean }
  | { op: 'list'; args: readonly string[]; terse?: boolean }
  | { op: 'version' };

/** What nft answers (exit code 0 and empty output unless given), or a transport that cannot run at all. */
export type NftAnswer = { exitCode?: number; stdout?: string; stderr?: string } | { fail: Error };

export interface NftScriptStep {
  op: NftCall['op'];
  answer: NftAnswer;
}

export class ScriptedNftTransport implements NftTransport {
  readonly kind = 'fake' as const;
  readonly description = 'scripted fake nft (unit tests)';
  readonly calls: NftCall[] = [];
  private readonly steps: NftScriptStep[];

  constructor(steps: NftScriptStep[] = []) {
    this.steps = [...steps];
  }

  /** Appends a step: the next `op` call answers `answer`. */
  then(op: NftCall['op'], answer: NftAnswer = {}): this {
    this.steps.push({ op, answer });
    return this;
  }

  /** Steps not yet taken. */
  get pending(): readonly NftScriptStep[] {
    return this.steps;
  }

  private async answer(call: NftCall, command: string): Promise<NftResult> {
    this.calls.push(call);
    const step = this.steps.shift();
    if (!step) throw new Error(`scripted nft: unexpected ${call.op} call (script exhausted)`);
    if (step.op !== call.op) throw new Error(`scripted nft: expected a ${step.op} call, got ${call.op}`);
    if ('fail' in step.answer) throw step.answer.fail;
    return { command, exitCode: step.answer.exitCode ?? 0, stdout: step.answer.stdout ?? '', stderr: step.answer.stderr ?? '' };
  }

  run(batch: string, options: { check: boolean }): Promise<NftResult> {
    return this.answer({ op: 'run', batch, check: options.check }, `nft${options.check ? ' -c' : ''} -j -f <batch> (scripted)`);
  }

  list(args: readonly string[], options: { terse?: boolean } = {}): Promise<NftResult> {
    return this.answer({ op: 'list', args: [...args], ...(options.terse ? { terse: true } : {}) }, `nft${options.terse ? ' -t' : ''} -j list ${args.join(' ')} (scripted)`);
  }

  async version(): Promise<string> {
    return (await this.answer({ op: 'version' }, 'nft --version (scripted)')).stdout.trim();
  }
}
