// One part of status's netlink read (netlink-read.ts, startCompactRead): in a worker thread it
// posts what it read to its parent; started as a process in a namespace (`ip netns exec NS node
// status-read-worker.js PART`, when the addon cannot enter it), it prints it as JSON.
import { writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { type CompactPart, readCompactPart } from './netlink-read.js';

const options = (parentPort ? workerData : { part: process.argv[2] }) as { part: CompactPart; netns?: string };
readCompactPart(options.part, options.netns).then(
  (read) => {
    if (parentPort) return parentPort.postMessage({ read });
    const buffer = Buffer.from(JSON.stringify(read));
    for (let at = 0; at < buffer.length; ) at += writeSync(1, buffer, at);
  },
  (error: unknown) => {
    if (parentPort) return parentPort.postMessage({ error: (error as Error).message });
    process.stderr.write(`${(error as Error).message}\n`);
    process.exitCode = 1;
  },
);
