// Images for CRI tests, which cannot pull: the busybox test image, and a "pause"
// image made from it (entrypoint: a long sleep) to serve as the CRI plugin's
// sandbox_image. Both are imported with ctr into the `k8s.io` namespace, the one
// containerd's CRI plugin serves. The pause image is cached under build/.
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { importTestImage, TEST_IMAGE_REF, type Containerd } from './containerd.js';
import { repoRoot } from './paths.js';
import { run, type RunResult } from './run.js';

/** The containerd namespace of the CRI plugin. */
export const CRI_NAMESPACE = 'k8s.io';
export const PAUSE_IMAGE_REF = 'docker.io/tern/pause:test';

/** TOML lines for the `[plugins."io.containerd.grpc.v1.cri"]` table that make the local pause image the sandbox image. */
export const CRI_SANDBOX_IMAGE_CONFIG = `  sandbox_image = ${JSON.stringify(PAUSE_IMAGE_REF)}`;

/** `ctr --address <sock> -n k8s.io ARGS`. */
export function ctrK8s(c: Containerd, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run('ctr', ['--address', c.address, '-n', CRI_NAMESPACE, ...args], { timeoutMs });
}

async function must(p: Promise<RunResult>, what: string): Promise<RunResult> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}):\n${r.stderr}`);
  return r;
}

/** Builds build/test-pause-image.tar from build/test-image.tar unless it is newer. */
async function buildPauseImage(testTar: string): Promise<string> {
  const out = join(repoRoot(), 'build', 'test-pause-image.tar');
  if (existsSync(out) && statSync(out).mtimeMs > statSync(testTar).mtimeMs) return out;
  const work = mkdtempSync(join(tmpdir(), 'tern-pause-'));
  try {
    const layout = join(work, 'layout');
    await must(run('mkdir', ['-p', layout], { timeoutMs: 10_000 }), 'mkdir');
    await must(run('tar', ['-xf', testTar, '-C', layout], { timeoutMs: 60_000 }), 'tar -x');
    await must(
      run('umoci', ['config', '--image', `${layout}:test`, '--no-history', '--config.entrypoint', '/bin/sleep', '--config.cmd', '2147483647'], {
        timeoutMs: 60_000,
      }),
      'umoci config',
    );
    const indexPath = join(layout, 'index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
    if (index.manifests.length !== 1) throw new Error(`expected one manifest in the pause layout, got ${index.manifests.length}`);
    for (const m of index.manifests) {
      m.annotations = { 'org.opencontainers.image.ref.name': 'test', 'io.containerd.image.name': PAUSE_IMAGE_REF };
    }
    writeFileSync(indexPath, JSON.stringify(index));
    const tmpOut = `${out}.tmp-${process.pid}`;
    await must(run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '-C', layout, '-cf', tmpOut, '.'], { timeoutMs: 60_000 }), 'tar -c');
    renameSync(tmpOut, out);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Imports the busybox test image and the pause image into `k8s.io`; returns their references.
 * (The test image is also imported into the harness's own namespace, which builds it.)
 */
export async function importCriImages(c: Containerd): Promise<{ image: string; pause: string }> {
  await importTestImage(c);
  const testTar = join(repoRoot(), 'build', 'test-image.tar');
  const pauseTar = await buildPauseImage(testTar);
  for (const tar of [testTar, pauseTar]) {
    await must(ctrK8s(c, ['images', 'import', tar], 120_000), `ctr -n ${CRI_NAMESPACE} images import ${tar}`);
  }
  const ls = await must(ctrK8s(c, ['images', 'ls', '-q']), 'ctr images ls');
  for (const ref of [TEST_IMAGE_REF, PAUSE_IMAGE_REF]) {
    if (!ls.stdout.split('\n').includes(ref)) throw new Error(`${ref} not in ${CRI_NAMESPACE} after import:\n${ls.stdout}`);
  }
  return { image: TEST_IMAGE_REF, pause: PAUSE_IMAGE_REF };
}
