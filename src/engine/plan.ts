// What an apply would change: the model diff against the last generation, plus whether the
// kernel still holds that generation.
import type { ModelDiff } from '../model/diff.js';

export { diffModels, type Change, type ChangeOp, type ObjectKind } from '../model/diff.js';

export interface Plan extends ModelDiff {
  /** True when the kernel's ruleset differs from the last apply (apply will rewrite it); absent when it could not be read. */
  drift?: boolean;
  /** Generations skipped because they could not be read (see docs/operations.md). */
  warnings?: string[];
}
