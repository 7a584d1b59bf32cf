// The agent's default timing, apart from the agent itself: `natctl watch` shows these in its
// help without loading the agent (CLI start-up, docs/performance.md).
import type { LoopTiming } from './loop.js';

export const defaultTiming: LoopTiming = { debounceMs: 200, maxDelayMs: 2000, minIntervalMs: 1000, resyncMs: 60_000 };
