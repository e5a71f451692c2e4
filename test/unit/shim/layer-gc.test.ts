// The layer cache's collection on temporary directories: snapshot
// directories are plain directories, images are small files with the cache's
// names (mkfs.erofs is layers.test.ts's), sandboxes are directories with pins.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { noopLogSink } from '../../../src/common/log-sink';
import { procStartTime } from '../../../src/common/proc';
import type { HypervisorDriver } from '../../../src/hypervisor/hypervisor';
import { classifyEntry, GC_LOCK, imageName, recordName, tempIsStale, writeLayerRecord } from '../../../src/shim/layer-files';
import { collectLayers, type LayerGcResult, removeUnpinnedImage } from '../../../src/shim/layer-gc';
import { type LayerFacts, planLayerGc } from '../../../src/shim/layer-gc-plan';
import { LayerPins } from '../../../src/shim/layer-pins';
import { parseLedger } from '../../../src/shim/teardown-ledger';
import { diskUndoers } from '../../../src/shim/teardown-undoers';

const MiB = 1024 * 1024;
const key = (n: number) => n.toString(16).padStart(64, '0');

function facts(n: number, over: Partial<LayerFacts>): LayerFacts {
  return { key: key(n), bytes: MiB, users: 0, lastUsedMs: n, source: 'present', ...over };
}

describe('layer collection plan', () => {
  it('keeps what a sandbox uses whatever its source; removes unused layers whose source is gone, changed or unknown', () => {
    const d = planLayerGc(
      [facts(1, { users: 1, source: 'gone' }), facts(2, { source: 'gone' }), facts(3, { source: 'changed' }), facts(4, { source: 'unknown' }), facts(5, {})],
      0,
    );
    expect(d.map((x) => [x.layer.key, x.action, x.reason])).toEqual([
      [key(1), 'keep', 'in-use'],
      [key(2), 'remove', 'source-gone'],
      [key(3), 'remove', 'source-changed'],
      [key(4), 'remove', 'no-record'],
      [key(5), 'keep', 'source-present'],
    ]);
  });

  it('under a bound, evicts unused layers least recently used first, never one in use', () => {
    const layers = [facts(1, { lastUsedMs: 30 }), facts(2, { lastUsedMs: 10, users: 2 }), facts(3, { lastUsedMs: 20 }), facts(4, { lastUsedMs: 40 })];
    // 4 MiB held, 2 MiB allowed: the oldest unused (3, then 1) go; 2 is older but in use.
    expect(planLayerGc(layers, 2 * MiB).map((x) => x.reason)).toEqual(['evicted', 'in-use', 'evicted', 'source-present']);
    // Everything unused gone and still over: what is in use stays.
    expect(planLayerGc(layers, 1).map((x) => x.action)).toEqual(['remove', 'keep', 'remove', 'remove']);
    expect(planLayerGc(layers, 4 * MiB).every((x) => x.action === 'keep')).toBe(true);
  });

  it('names in the cache directory: images, records, temp files with their writer, trash', () => {
    expect(classifyEntry(`${key(7)}.erofs`)).toEqual({ kind: 'image', key: key(7) });
    expect(classifyEntry(`${key(7)}.json`)).toEqual({ kind: 'record', key: key(7) });
    expect(classifyEntry(`${key(7)}.erofs.tmp-123-456`)).toEqual({ kind: 'temp', key: key(7), pid: 123, startedMs: 456 });
    expect(classifyEntry(`${key(7)}.json.tmp-9-10`)).toEqual({ kind: 'temp', key: key(7), pid: 9, startedMs: 10 });
    expect(classifyEntry(`.trash-${key(7)}-5`)).toEqual({ kind: 'trash' });
    expect(classifyEntry('users')).toEqual({ kind: 'other' });
    expect(classifyEntry('abc.erofs')).toEqual({ kind: 'other' });
    const alive = (pid: number) => pid === 1;
    expect(tempIsStale({ pid: 1, startedMs: 1000 }, 2000, alive)).toBe(false);
    expect(tempIsStale({ pid: 2, startedMs: 1000 }, 2000, alive)).toBe(true);
    expect(tempIsStale({ pid: 1, startedMs: 0 }, 11 * 60_000, alive)).toBe(true);
  });
});

describe('layer collection on disk', () => {
  let tmp: string;
  let layers: string;
  let deadPid: number;
  const collect = (maxBytes = 0, lockWaitMs = 0): Promise<LayerGcResult> => collectLayers({ layersDir: layers, maxBytes, lockWaitMs, log: noopLogSink });
  const names = () => readdirSync(layers).sort();

  /** A snapshot directory and a cached image of it (bytes long) with its record; returns the key. */
  async function cachedLayer(name: string, bytes = 1000): Promise<{ key: string; snap: string }> {
    const snap = join(tmp, 'snapshots', name);
    mkdirSync(snap, { recursive: true });
    const st = statSync(snap);
    const k = `${Buffer.from(name).toString('hex')}`.padEnd(64, '0');
    writeFileSync(join(layers, imageName(k)), Buffer.alloc(bytes, 1));
    await writeLayerRecord(layers, k, { source: snap, ino: st.ino, ctimeMs: st.ctimeMs, builtAt: new Date().toISOString() });
    return { key: k, snap };
  }

  function sandbox(name: string): { dir: string; pins: LayerPins } {
    const dir = join(tmp, 'state', 'sb', name);
    mkdirSync(dir, { recursive: true });
    return { dir, pins: new LayerPins(layers, dir) };
  }

  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'tern-layer-gc-'));
    layers = join(tmp, 'cache', 'layers');
    mkdirSync(layers, { recursive: true });
    // A pid that ran and is gone.
    deadPid = spawnSync('true').pid!;
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  it('removes a layer whose snapshot is gone unless a live sandbox pins it; the sandbox gone, it goes too', async () => {
    const kept = await cachedLayer('kept');
    const gone = await cachedLayer('gone');
    const used = await cachedLayer('used');
    const pod = sandbox('pod');
    const pinned = await pod.pins.pin(join(layers, imageName(used.key)), used.key);
    expect(pinned).toBe(join(pod.pins.dir, imageName(used.key)));
    rmSync(gone.snap, { recursive: true });
    rmSync(used.snap, { recursive: true });

    const r = await collect();
    expect(r.ran).toBe(true);
    expect(r.removed).toEqual([{ key: gone.key, bytes: 1000, reason: 'source-gone' }]);
    expect(r.kept.map((k) => [k.key, k.reason, k.users]).sort()).toEqual(
      [
        [kept.key, 'source-present', 0],
        [used.key, 'in-use', 1],
      ].sort(),
    );
    expect(names()).toEqual([imageName(kept.key), recordName(kept.key), imageName(used.key), recordName(used.key), 'users'].sort());

    // The pod's state directory goes without its teardown (a reboot empties /run): its pins are stale.
    rmSync(pod.dir, { recursive: true });
    const r2 = await collect();
    expect(r2.stalePins).toBe(1);
    expect(r2.removed.map((x) => x.key)).toEqual([used.key]);
    expect(readdirSync(join(layers, 'users'))).toEqual([]);
    expect(names()).toEqual([imageName(kept.key), recordName(kept.key), 'users'].sort());
  });

  it('a pinned image stays readable for its sandbox even when the cache name is removed; a later pin of the key finds it', async () => {
    const l = await cachedLayer('l', 4096);
    const pod = sandbox('pod');
    const p = (await pod.pins.pin(join(layers, imageName(l.key)), l.key))!;
    unlinkSync(join(layers, imageName(l.key)));
    expect(statSync(p).size).toBe(4096);
    expect(await pod.pins.pin(join(layers, imageName(l.key)), l.key)).toBe(p);
    // Another sandbox has no pin: the image must be built again.
    expect(await sandbox('other').pins.pin(join(layers, imageName(l.key)), l.key)).toBeNull();
  });

  it('a source directory replaced by another (same path, new inode) is a changed source; an image without a record goes', async () => {
    const l = await cachedLayer('replaced');
    rmSync(l.snap, { recursive: true });
    mkdirSync(join(tmp, 'filler'));
    mkdirSync(l.snap);
    const legacy = key(0xabc);
    writeFileSync(join(layers, imageName(legacy)), 'x');
    const r = await collect();
    expect(r.removed.map((x) => [x.key, x.reason]).sort()).toEqual(
      [
        [l.key, 'source-changed'],
        [legacy, 'no-record'],
      ].sort(),
    );
    expect(names()).toEqual([]);
  });

  it('never removes a build in progress; removes a dead build, an overdue one, a dead collection trash and orphan records', async () => {
    const k = key(1);
    const now = Date.now();
    const building = `${imageName(k)}.tmp-${process.pid}-${now}`;
    const buildingRecord = recordName(k);
    writeFileSync(join(layers, building), 'in progress');
    writeFileSync(join(layers, buildingRecord), '{}');
    writeFileSync(join(layers, `${imageName(key(2))}.tmp-${deadPid}-${now}`), 'dead');
    writeFileSync(join(layers, `${recordName(key(2))}.tmp-${deadPid}-${now}`), 'dead');
    writeFileSync(join(layers, `${imageName(key(3))}.tmp-${process.pid}-${now - 11 * 60_000}`), 'overdue');
    writeFileSync(join(layers, `.trash-${key(4)}-${deadPid}`), 'trash');
    writeFileSync(join(layers, recordName(key(5))), '{}');
    const r = await collect();
    expect(r.staleTemps).toBe(4);
    expect(r.orphanRecords).toBe(1);
    expect(names()).toEqual([building, buildingRecord].sort());
  });

  it('evicts unused layers least recently used first to fit runtime.layer_cache_max_mib; a pinned one stays', async () => {
    const a = await cachedLayer('a', MiB);
    const b = await cachedLayer('b', MiB);
    const c = await cachedLayer('c', MiB);
    const pod = sandbox('pod');
    await pod.pins.pin(join(layers, imageName(a.key)), a.key);
    // Use order (change time): a (pinned) oldest, then c, then b.
    await new Promise((r) => setTimeout(r, 20));
    chmodSync(join(layers, imageName(c.key)), 0o644);
    await new Promise((r) => setTimeout(r, 20));
    chmodSync(join(layers, imageName(b.key)), 0o644);
    const r = await collect(2 * MiB);
    expect(r.removed).toEqual([{ key: c.key, bytes: MiB, reason: 'evicted' }]);
    expect(r.keptBytes).toBe(2 * MiB);
    const r2 = await collect(1);
    expect(r2.removed.map((x) => x.key)).toEqual([b.key]);
    expect(names()).toEqual([imageName(a.key), recordName(a.key), 'users'].sort());
    // Unbounded, nothing more goes.
    expect((await collect(0)).removed).toEqual([]);
  });

  it('one collection at a time: a live holder of .gc.lock makes it wait, then give up; a dead holder lock is taken over', async () => {
    const gone = await cachedLayer('gone');
    rmSync(gone.snap, { recursive: true });
    const lock = join(layers, GC_LOCK);
    writeFileSync(lock, JSON.stringify({ pid: process.pid, startTime: procStartTime(process.pid) }));
    const started = Date.now();
    const r = await collect(0, 300);
    expect(r.ran).toBe(false);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(existsSync(join(layers, imageName(gone.key)))).toBe(true);
    writeFileSync(lock, JSON.stringify({ pid: deadPid, startTime: 'x' }));
    const r2 = await collect();
    expect(r2.ran).toBe(true);
    expect(r2.removed.map((x) => x.key)).toEqual([gone.key]);
    expect(existsSync(lock)).toBe(false);
  });

  it('an image pinned between the look and the removal is put back, its record kept', async () => {
    const l = await cachedLayer('raced');
    const image = join(layers, imageName(l.key));
    // The pin lands after the collection decided: the image has a second link by the time it is renamed aside.
    await sandbox('late').pins.pin(image, l.key);
    expect(await removeUnpinnedImage(layers, l.key)).toBe(false);
    expect(statSync(image).nlink).toBe(2);
    expect(names()).toEqual([imageName(l.key), recordName(l.key), 'users'].sort());
    // Unpinned and looked at again, it goes, with its record.
    rmSync(join(layers, 'users'), { recursive: true });
    expect(await removeUnpinnedImage(layers, l.key)).toBe(true);
    expect(await removeUnpinnedImage(layers, l.key)).toBe(false);
    expect(names()).toEqual([]);
  });

  it('a missing cache directory is nothing to do', async () => {
    rmSync(layers, { recursive: true });
    expect(await collect()).toMatchObject({ ran: true, removed: [], kept: [] });
  });

  it('the layer-pins ledger step: undone, the sandbox releases its pins and the cache is collected', async () => {
    const l = await cachedLayer('l');
    const pod = sandbox('pod');
    await pod.pins.pin(join(layers, imageName(l.key)), l.key);
    rmSync(l.snap, { recursive: true });
    const step = parseLedger(`${JSON.stringify({ kind: 'layer-pins', pinsDir: pod.pins.dir, layersDir: layers, maxMiB: 0 })}\n`);
    expect(step).toHaveLength(1);
    const undo = diskUndoers(pod.dir, {} as HypervisorDriver, noopLogSink as never)['layer-pins'];
    await undo(step[0] as Extract<(typeof step)[0], { kind: 'layer-pins' }>);
    expect(existsSync(pod.pins.dir)).toBe(false);
    expect(names()).toEqual(['users']);
    // Idempotent: undoing again finds nothing.
    await undo(step[0] as Extract<(typeof step)[0], { kind: 'layer-pins' }>);
    expect(names()).toEqual(['users']);
  });
});
