// Reads natctl's table over nf_tables netlink inside the namespace it was started in
// (`ip netns exec NS node netlink-read-worker.js`) and prints it as JSON (netlink-read.ts).
import { readRawTable } from './netlink-read.js';

readRawTable().then(
  (table) => process.stdout.write(JSON.stringify(table)),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 1;
  },
);
