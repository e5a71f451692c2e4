// Runs a benchmark's main and exits with its code (1 with the stack if it throws).
export function runMain(main: () => Promise<number>, what = "bench"): void {
  main().then(
    (code) => process.exit(code),
    (e: Error) => {
      console.error(`${what} failed: ${e.stack ?? e.message}`);
      process.exit(1);
    },
  );
}
