// Runs a benchmark's main and exits with its code (1 with the stack if it throws).
// main gets the benchmark's progress on stderr (a live line on a terminal, one
// line per step in a pipe or under CI; see src/common/progress.ts); whatever
// way the process exits, the live line is cleared first.
import { Progress } from "../src/common/progress.js";

export function runMain(main: (progress: Progress) => Promise<number>, what = "bench"): void {
  const progress = new Progress({ stream: process.stderr, prefix: `${what}: ` });
  // Signal handlers of the benchmarks call process.exit themselves: a step still open then did not
  // finish. Stderr on a terminal is written synchronously, so the line is clean before the shell prompt.
  process.once("exit", () => {
    progress.fail();
    progress.end();
  });
  main(progress).then(
    (code) => {
      progress.end();
      process.exit(code);
    },
    (e: Error) => {
      progress.fail();
      progress.end();
      console.error(`${what} failed: ${e.stack ?? e.message}`);
      process.exit(1);
    },
  );
}
