// Locates the repository root (the folder whose package.json is named "tern"): env
// TERN_REPO_ROOT, else walking up from the working directory, else from the running
// script (so it works under vitest and from a bundle in dist/).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

let cached: string | undefined;

function isRepoRoot(dir: string): boolean {
  const manifest = resolve(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'tern';
  } catch {
    return false;
  }
}

function searchUp(start: string): string | undefined {
  let dir = resolve(start);
  for (;;) {
    if (isRepoRoot(dir)) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

export function repoRoot(): string {
  if (cached !== undefined) return cached;
  const fromEnv = process.env.TERN_REPO_ROOT;
  const found =
    (fromEnv && isRepoRoot(fromEnv) ? resolve(fromEnv) : undefined) ??
    searchUp(process.cwd()) ??
    (process.argv[1] ? searchUp(dirname(process.argv[1])) : undefined);
  if (found === undefined) throw new Error('repository root (package.json named tern) not found; set TERN_REPO_ROOT');
  cached = found;
  return found;
}
