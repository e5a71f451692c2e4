// Runs a benchmark's main and exits with its code (1 with the stack if it throws).
// main gets the benchmark's progress on stderr (a live line on a terminal, one
// line per step in a pipe or under CI; see src/common/progress.ts); whatever
// way the process exits, the live line is cleared first.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { Progress } from '../src/common/progress.js';

export function runMain(main: (progress: Progress) => Promise<number>, what = 'bench'): void {
  const progress = new Progress({ stream: process.stderr, prefix: `${what}: ` });
  // Signal handlers of the benchmarks call process.exit themselves: a step still open then did not
  // finish. Stderr on a terminal is written synchronously, so the line is clean before the shell prompt.
  process.once('exit', () => {
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

/**
 * runMain, in a session of its own: the benchmark re-runs itself as a detached
 * child, so that Ctrl-C on the terminal reaches only this process (which
 * forwards it) and not containerd, which shares the benchmark's process group
 * and would otherwise quit with pods still running. sessionEnv marks the child.
 */
export function runMainInOwnSession(main: (progress: Progress) => Promise<number>, what: string, sessionEnv: string): void {
  if (process.env[sessionEnv] !== undefined) {
    runMain(main, what);
    return;
  }
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], {
    detached: true,
    stdio: 'inherit',
    env: { ...process.env, [sessionEnv]: String(process.pid) },
  });
  const forward = (sig: NodeJS.Signals) => {
    if (child.pid === undefined || child.exitCode !== null) return;
    try {
      process.kill(child.pid, sig);
    } catch {
      // already gone
    }
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, forward);
  child.on('error', (e) => {
    console.error(`${what} could not start: ${e.message}`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal ? (constants.signals[signal] ?? 1) : 1)));
}
