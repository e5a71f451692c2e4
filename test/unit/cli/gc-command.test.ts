// `tern gc` on a cache directory of its own: what it removes and keeps, its
// report (text and JSON), and its config errors. The collection itself is
// test/unit/shim/layer-gc.test.ts's; the real one test/integration/layer-gc.test.ts's.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bufferIo } from '../../../src/cli/io';
import { runCli } from '../../../src/cli/run';
import { imageName, recordName, writeLayerRecord } from '../../../src/shim/layer-files';
import { ScratchDisks, scratchDirOf, scratchRootOf } from '../../../src/shim/scratch-disks';

describe('tern gc', () => {
  let tmp: string;
  let layers: string;
  let config: string;
  const keyOf = (c: string) => c.repeat(64);

  async function layer(k: string, bytes: number, sourceGone: boolean): Promise<void> {
    const snap = join(tmp, 'snap', k.slice(0, 4));
    mkdirSync(snap, { recursive: true });
    const st = statSync(snap);
    writeFileSync(join(layers, imageName(k)), Buffer.alloc(bytes));
    await writeLayerRecord(layers, k, { source: snap, ino: st.ino, ctimeMs: st.ctimeMs, builtAt: '2026-01-01T00:00:00.000Z' });
    if (sourceGone) rmSync(snap, { recursive: true });
  }

  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'tern-gc-cli-'));
    layers = join(tmp, 'cache', 'layers');
    mkdirSync(layers, { recursive: true });
    config = join(tmp, 'config.toml');
    writeFileSync(config, `[runtime]\ncache_dir = ${JSON.stringify(join(tmp, 'cache'))}\n`);
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  it('removes layer images whose snapshot is gone, keeps the others, and says so', async () => {
    await layer(keyOf('a'), 2048, true);
    await layer(keyOf('b'), 1024, false);
    const io = bufferIo();
    expect(await runCli(['gc', '--config', config], io)).toBe(0);
    expect(io.stdout).toMatch(/^removed 1 layer image\(s\), /);
    expect(io.stdout).toMatch(new RegExp(`${'a'.repeat(16)} .* source-gone`));
    expect(io.stdout).toMatch(/kept 1 layer image\(s\), .* \(0 in use\); no bound \(runtime\.layer_cache_max_mib = 0\)/);
    expect(readdirSync(layers).sort()).toEqual([imageName(keyOf('b')), recordName(keyOf('b'))].sort());
  });

  it('removes the writable-layer directories of sandboxes that are gone, and keeps a live one', async () => {
    const cache = join(tmp, 'cache');
    const live = join(tmp, 'sb-live');
    const gone = join(tmp, 'sb-gone');
    mkdirSync(live);
    mkdirSync(gone);
    const keep = new ScratchDisks(scratchDirOf(cache, live), live, 16);
    await keep.make(16);
    await new ScratchDisks(scratchDirOf(cache, gone), gone, 16).make(16);
    rmSync(gone, { recursive: true });
    const io = bufferIo();
    expect(await runCli(['gc', '--config', config], io)).toBe(0);
    expect(io.stdout).toContain('removed 1 writable-layer directories of sandboxes that are gone');
    expect(readdirSync(scratchRootOf(cache))).toEqual([keep.dir.split('/').at(-1)]);
  });

  it('--json: the collection as data; the bound from the config evicts what is unused', async () => {
    await layer(keyOf('c'), 1024 * 1024, false);
    writeFileSync(config, `[runtime]\ncache_dir = ${JSON.stringify(join(tmp, 'cache'))}\nlayer_cache_max_mib = 1\n`);
    await layer(keyOf('d'), 1024 * 1024, false);
    const io = bufferIo();
    expect(await runCli(['gc', '--json', '-c', config], io)).toBe(0);
    const r = JSON.parse(io.stdout) as {
      layersDir: string;
      ran: boolean;
      removed: Array<{ key: string; reason: string }>;
      keptBytes: number;
      maxBytes: number;
    };
    expect(r).toMatchObject({ layersDir: layers, ran: true, maxBytes: 1024 * 1024, keptBytes: 1024 * 1024 });
    expect(r.removed).toEqual([{ key: keyOf('c'), bytes: 1024 * 1024, reason: 'evicted' }]);
    expect(readdirSync(layers)).toContain(imageName(keyOf('d')));
  });

  it('a bad layer_cache_max_mib is an error naming the key and the value; help and usage list the command', async () => {
    writeFileSync(config, '[runtime]\nlayer_cache_max_mib = -1\n');
    const io = bufferIo();
    expect(await runCli(['gc', '--config', config], io)).toBe(1);
    expect(io.stderr).toMatch(/tern gc: .*runtime\.layer_cache_max_mib must be a number \(0 or more\), not -1/);
    const help = bufferIo();
    expect(await runCli(['help', 'gc'], help)).toBe(0);
    expect(help.stdout).toMatch(/^Usage: tern gc \[--json\]/);
    const main = bufferIo();
    expect(await runCli(['--help'], main)).toBe(0);
    expect(main.stdout).toMatch(/^ {2}gc \[--json\] +remove unused layer images/m);
    expect(await runCli(['gc', 'extra'], bufferIo())).toBe(2);
  });
});
