// Loaded into the natctl CLI with `node --import` by the bench: on exit, writes the process's
// peak resident set (getrusage ru_maxrss, KiB) to NATCTL_BENCH_RSS_FILE. Exact, and costs
// nothing while the CLI runs.
import { writeFileSync } from 'node:fs';

const file = process.env.NATCTL_BENCH_RSS_FILE;
if (file) {
  process.on('exit', () => {
    try {
      writeFileSync(file, String(process.resourceUsage().maxRSS));
    } catch {
      // the bench reports a missing value
    }
  });
}
