// Runs a host command to completion with a deadline and captures its output;
// a command that cannot be started (not installed) gives null. On the
// deadline the child is killed by its pid (execFile's timeout).
import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import type { CommandOutput } from './checks';

export function runCommand(cmd: string, args: string[], timeoutMs = 10_000): Promise<CommandOutput | null> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') return resolve(null);
      if (err?.killed) return resolve({ code: 124, stdout, stderr: `${stderr}\n${cmd} did not finish within ${timeoutMs} ms` });
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Resolves a command name the way a shell does (absolute or relative paths as given). */
export function which(name: string, pathEnv = process.env.PATH ?? ''): string | null {
  if (name.includes('/')) return isExecutableFile(name) ? (isAbsolute(name) ? name : join(process.cwd(), name)) : null;
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutableFile(p)) return p;
  }
  return null;
}

/** Where containerd would find a shim: its PATH, then containerd's own directory. */
export function findShim(binary: string, pathEnv = process.env.PATH ?? ''): string | null {
  const onPath = which(binary, pathEnv);
  if (onPath) return onPath;
  const containerd = which('containerd', pathEnv);
  if (!containerd) return null;
  const beside = join(dirname(containerd), binary);
  return isExecutableFile(beside) ? beside : null;
}
