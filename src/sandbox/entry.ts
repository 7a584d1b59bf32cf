// The entry point of the sandbox scripts (demos, fleet soak): main's result is the exit code;
// a failure prints `LABEL failed: MESSAGE` and exits 1. Their cleanup runs in main's own finally.
export function runEntry(label: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`${label} failed: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
