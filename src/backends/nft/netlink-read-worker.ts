// Reads natctl's table over nf_tables netlink inside the namespace it was started in
// (`ip netns exec NS node netlink-read-worker.js`) and prints it as JSON (netlink-read.ts):
// the elements as each dump message is decoded, the rest (chains, sets, rules) at the end.
import { writeSync } from 'node:fs';
import { readRawTableInto } from './netlink-read.js';

// Synchronous writes: nothing decoded waits in memory for a slow reader.
const write = (text: string): void => {
  const buffer = Buffer.from(text);
  for (let at = 0; at < buffer.length; ) at += writeSync(1, buffer, at);
};

let current: string | undefined;
let first = true;
write('{"elements":{');
readRawTableInto((name, elements) => {
  if (name !== current) {
    write(`${current === undefined ? '' : '],'}${JSON.stringify(name)}:[`);
    current = name;
    first = true;
  }
  if (!elements.length) return;
  write(`${first ? '' : ','}${elements.map((element) => JSON.stringify(element)).join(',')}`);
  first = false;
}).then(
  (table) => write(`${current === undefined ? '' : ']'}},"table":${JSON.stringify(table)}}`),
  (error: unknown) => {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 1;
  },
);
