// Finds proto/cri/api.proto at run time: under env TERN_REPO_ROOT, else in the
// first folder upward (from this module, the running script or the working
// directory) whose package.json is named "tern". Works from test/ under vitest
// and from a bundle in dist/.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const PROTO_RELATIVE = join('proto', 'cri', 'api.proto');

function isRepoRoot(dir: string): boolean {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) return false;
  try {
    return (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'tern';
  } catch {
    return false;
  }
}

function searchUp(start: string): string | undefined {
  let dir = resolve(start);
  for (;;) {
    if (isRepoRoot(dir) && existsSync(join(dir, PROTO_RELATIVE))) return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/** Absolute path of the CRI API .proto file; throws naming the places searched. */
export function criProtoPath(): string {
  const starts: string[] = [];
  const fromEnv = process.env.TERN_REPO_ROOT;
  if (fromEnv) {
    const p = join(resolve(fromEnv), PROTO_RELATIVE);
    if (existsSync(p)) return p;
    starts.push(`TERN_REPO_ROOT=${fromEnv}`);
  }
  // __dirname exists in the CommonJS bundle and under vitest; not in plain ESM.
  const here = typeof __dirname === 'string' ? __dirname : undefined;
  const script = process.argv[1] ? dirname(process.argv[1]) : undefined;
  for (const start of [here, script, process.cwd()]) {
    if (start === undefined) continue;
    const root = searchUp(start);
    if (root !== undefined) return join(root, PROTO_RELATIVE);
    starts.push(start);
  }
  throw new Error(`${PROTO_RELATIVE} not found (searched upward from ${starts.join(', ')}); set TERN_REPO_ROOT`);
}
