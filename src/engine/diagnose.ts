// A kernel's refusal of a batch names no command ("Could not process rule: File exists").
// When a load is refused, find which mapping the kernel objects to by checking halves of the
// model with the backend's check (nothing is committed): log2(n) checks instead of a guess.
import type { Backend } from '../backends/backend.js';
import type { Model } from '../model/model.js';

async function accepts(backend: Backend, model: Model): Promise<boolean> {
  try {
    await backend.check(backend.render(model));
    return true;
  } catch {
    return false;
  }
}

/** Names the first mapping whose presence makes the kernel refuse the ruleset, or undefined. */
export async function findRefusedMapping(backend: Backend, model: Model): Promise<string | undefined> {
  const withMappings = (count: number): Model => ({ ...model, mappings: model.mappings.slice(0, count) });
  if (await accepts(backend, model)) return undefined; // refused only on commit: nothing to pin down
  if (!(await accepts(backend, withMappings(0)))) return undefined; // the base ruleset itself is refused
  let good = 0;
  let bad = model.mappings.length;
  while (bad - good > 1) {
    const middle = Math.floor((good + bad) / 2);
    if (await accepts(backend, withMappings(middle))) good = middle;
    else bad = middle;
  }
  return model.mappings[bad - 1]?.name;
}
