// The built tern CLI (dist/tern.js) as the integration tests run it, with the
// shim's directory on PATH (where containerd and `tern check` find it), and
// waiting for a task's status through ctr.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Containerd } from './containerd.js';
import { repoRoot } from './paths.js';
import { run, type RunResult } from './run.js';
import { waitFor } from './wait.js';

export const binDir = join(repoRoot(), 'build', 'bin');
export const ternJs = join(repoRoot(), 'dist', 'tern.js');
export const ternEnv: NodeJS.ProcessEnv = { ...process.env, PATH: `${binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` };

/** Runs `tern ARGS` to completion (stdin: input, if given). */
export function tern(args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return run(process.execPath, [ternJs, ...args], { env: ternEnv, timeoutMs: opts.timeoutMs ?? 30_000, input: opts.input });
}

/** Waits until `ctr task ls` shows the task with this status (RUNNING, STOPPED, PAUSED). */
export async function waitForTask(c: Containerd, name: string, status: string, timeoutMs = 120_000): Promise<void> {
  let last = '';
  await waitFor(
    `task ${name} ${status}`,
    async () => {
      last = (await c.ctr(['task', 'ls'])).stdout;
      return last.split('\n').some((l) => l.split(/\s+/)[0] === name && l.includes(status)) ? true : undefined;
    },
    timeoutMs,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; task ls:\n${last}`);
  });
}

/** Bundles the current sources (scripts/build.mjs) and checks the shim is where containerd will look. */
export async function ensureBuilt(): Promise<void> {
  const b = await run(process.execPath, [join(repoRoot(), 'scripts', 'build.mjs')], { cwd: repoRoot(), timeoutMs: 120_000 });
  if (b.code !== 0) throw new Error(`build failed:\n${b.stderr}`);
  if (!existsSync(join(binDir, 'containerd-shim-tern-v2'))) throw new Error(`${binDir}/containerd-shim-tern-v2 missing: run \`make build\``);
}
