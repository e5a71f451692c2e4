// An image with a big file in a layer of its own: the busybox test image plus
// /big, N MiB of zeros. A container that reads /big fills its page cache from
// an image layer (an erofs disk under tern), which is what the memory-reclaim
// test and the "memory after a burst" benchmark make a pod do.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Containerd } from './containerd.js';
import { ctrK8s } from './cri-images.js';
import { repoRoot } from './paths.js';
import { run, type RunResult } from './run.js';

export const BIG_IMAGE = 'docker.io/tern/busybox:big300';
export const BIG_MIB = 300;

async function must(p: Promise<RunResult>, what: string): Promise<void> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stderr}`);
}

/** Builds the image as an OCI layout tar in work (which it also uses to unpack); returns the tar. */
async function buildBigImage(work: string): Promise<string> {
  const layout = join(work, 'layout');
  const bundle = join(work, 'bundle');
  mkdirSync(layout);
  await must(run('tar', ['-xf', join(repoRoot(), 'build', 'test-image.tar'), '-C', layout], { timeoutMs: 60_000 }), 'tar -x');
  await must(run('umoci', ['unpack', '--image', `${layout}:test`, bundle], { timeoutMs: 120_000 }), 'umoci unpack');
  await must(run('dd', ['if=/dev/zero', `of=${join(bundle, 'rootfs', 'big')}`, 'bs=1M', `count=${BIG_MIB}`], { timeoutMs: 60_000 }), 'dd');
  await must(run('umoci', ['repack', '--image', `${layout}:big`, bundle], { timeoutMs: 300_000 }), 'umoci repack');
  rmSync(bundle, { recursive: true, force: true });
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
  index.manifests = index.manifests.filter((m) => m.annotations?.['org.opencontainers.image.ref.name'] === 'big');
  for (const m of index.manifests) m.annotations = { 'org.opencontainers.image.ref.name': 'big', 'io.containerd.image.name': BIG_IMAGE };
  writeFileSync(indexPath, JSON.stringify(index));
  const tar = join(work, 'big.tar');
  await must(run('tar', ['-C', layout, '-cf', tar, '.'], { timeoutMs: 120_000 }), 'tar -c');
  rmSync(layout, { recursive: true, force: true });
  return tar;
}

/** Builds BIG_IMAGE (work: a scratch directory it makes) and imports it into the CRI namespace of c. */
export async function importBigImage(c: Containerd, work: string): Promise<string> {
  mkdirSync(work, { recursive: true });
  const tar = await buildBigImage(work);
  try {
    await must(ctrK8s(c, ['images', 'import', tar], 300_000), 'ctr images import');
  } finally {
    rmSync(tar, { force: true });
  }
  return BIG_IMAGE;
}
