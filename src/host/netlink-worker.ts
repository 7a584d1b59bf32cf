// Runs one rtnetlink operation inside the namespace it was started in (`ip netns exec NS
// node netlink-worker.js OP [ARG]`) and prints the result as JSON. See network.ts.
import { netlinkHost } from './netlink.js';

async function main(): Promise<void> {
  const [op, arg] = process.argv.slice(2);
  const host = netlinkHost();
  try {
    if (op === 'links') process.stdout.write(JSON.stringify(await host.links()));
    else if (op === 'addresses') process.stdout.write(JSON.stringify(await host.addresses()));
    else if ((op === 'hairpin' || op === 'hairpin-off') && arg && /^\d+:/.test(arg)) {
      const separator = arg.indexOf(':');
      await host.setHairpin({ index: Number(arg.slice(0, separator)), name: arg.slice(separator + 1) }, op === 'hairpin');
      process.stdout.write('null');
    } else throw new Error(`usage: netlink-worker links | addresses | hairpin INDEX:NAME | hairpin-off INDEX:NAME`);
  } finally {
    host.close();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exitCode = 1;
});
