// Backend command failures, classified once where they happen (by the backend that ran the
// command, which alone knows its tool's wording), so callers ask `isNotFound(error)` instead of
// matching a tool's stderr (the pattern of knftables' error.go).
import { BackendCommandError } from '../errors.js';

export type FailureKind =
  /** The object (table, chain, set) does not exist. */
  | 'not-found'
  /** The object already exists. */
  | 'exists'
  /** Not allowed: not root, no CAP_NET_ADMIN. */
  | 'permission'
  /** Another process holds the kernel's or the tool's lock (EBUSY, xtables lock). */
  | 'busy'
  /** Out of kernel memory or buffer space (ENOMEM, ENOBUFS, ENOSPC). */
  | 'resources'
  /** The kernel lacks a feature the ruleset uses (EOPNOTSUPP, a missing module). */
  | 'unsupported'
  /** The tool refused the input itself (syntax, a value it cannot parse). */
  | 'invalid'
  /** The command did not finish in time. */
  | 'timeout'
  | 'other';

export class BackendFailure extends BackendCommandError {
  constructor(readonly kind: FailureKind, command: string, exitCode: number | undefined, stderr: string) {
    super(command, exitCode, stderr);
    this.name = 'BackendFailure';
  }
}

export const failureKind = (error: unknown): FailureKind | undefined => (error instanceof BackendFailure ? error.kind : undefined);
export const isNotFound = (error: unknown): boolean => failureKind(error) === 'not-found';
export const isExists = (error: unknown): boolean => failureKind(error) === 'exists';
export const isPermission = (error: unknown): boolean => failureKind(error) === 'permission';
export const isBusy = (error: unknown): boolean => failureKind(error) === 'busy';
