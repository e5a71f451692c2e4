// An image with a layer of its own on top of the busybox test image's: the
// test image's OCI layout, unpacked, one file added, repacked (umoci adds a
// layer), named REF and imported with ctr. Two such images with different
// files have different top layers and share the bottom one.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Containerd } from './containerd.js';
import { repoRoot } from './paths.js';
import { run, type RunResult } from './run.js';

async function must(p: Promise<RunResult>, what: string): Promise<RunResult> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}):\n${r.stderr}`);
  return r;
}

/** Builds and imports `ref` (the test image plus a layer holding /`file` = `content`); the test image must be built. */
export async function importLayeredImage(c: Containerd, ref: string, file: string, content: string): Promise<string> {
  const work = mkdtempSync(join(tmpdir(), 'tern-layered-'));
  try {
    const layout = join(work, 'layout');
    const bundle = join(work, 'bundle');
    await must(run('mkdir', ['-p', layout], { timeoutMs: 10_000 }), 'mkdir');
    await must(run('tar', ['-xf', join(repoRoot(), 'build', 'test-image.tar'), '-C', layout], { timeoutMs: 60_000 }), 'tar -x');
    await must(run('umoci', ['unpack', '--image', `${layout}:test`, bundle], { timeoutMs: 60_000 }), 'umoci unpack');
    writeFileSync(join(bundle, 'rootfs', file), content);
    await must(run('umoci', ['repack', '--image', `${layout}:test`, bundle], { timeoutMs: 60_000 }), 'umoci repack');
    const indexPath = join(layout, 'index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
    for (const m of index.manifests) m.annotations = { 'org.opencontainers.image.ref.name': 'test', 'io.containerd.image.name': ref };
    writeFileSync(indexPath, JSON.stringify(index));
    const tar = join(work, 'image.tar');
    await must(run('tar', ['-C', layout, '-cf', tar, '.'], { timeoutMs: 60_000 }), 'tar -c');
    await must(c.ctr(['images', 'import', tar], { timeoutMs: 120_000 }), `ctr images import ${ref}`);
    return ref;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
