// MemoryReclaimer on a scratch "cgroup" tree of plain files: what it asks
// memory.reclaim for, where, when, and when never.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { hasSwap, MemoryReclaimer, RECLAIM_MIN_BYTES, reclaimableBytes } from '../../../src/agent/memory-reclaim.js';

const NO_SWAP = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n';
const SWAP = `${NO_SWAP}/dev/vdb                                partition\t1048572\t\t0\t\t-2\n`;

let root: string;
let reclaimers: MemoryReclaimer[] = [];

function group(rel: string, fileBytes: number, shmemBytes = 0): string {
  const dir = path.join(root, rel);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'memory.stat'), `anon 4096\nfile ${fileBytes}\nkernel 0\nshmem ${shmemBytes}\n`);
  fs.writeFileSync(path.join(dir, 'memory.reclaim'), '');
  return dir;
}

const asked = (dir: string) => fs.readFileSync(path.join(dir, 'memory.reclaim'), 'utf8');

function reclaimer(opts: { swaps?: string; idleMs?: number; enabled?: boolean } = {}): MemoryReclaimer {
  const swapsFile = path.join(root, 'swaps');
  fs.writeFileSync(swapsFile, opts.swaps ?? NO_SWAP);
  const r = new MemoryReclaimer({ cgroupRoot: root, exitDelayMs: 30, idleMs: opts.idleMs ?? 0, swapsFile, enabled: opts.enabled });
  reclaimers.push(r);
  return r;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-reclaim-'));
});

afterEach(() => {
  for (const r of reclaimers) r.close();
  reclaimers = [];
  fs.rmSync(root, { recursive: true, force: true });
});

describe('reclaimableBytes / hasSwap', () => {
  it('is page cache without tmpfs, never negative', () => {
    expect(reclaimableBytes('anon 1\nfile 300\nshmem 100\n')).toBe(200);
    expect(reclaimableBytes('file 10\nshmem 20\n')).toBe(0);
    expect(reclaimableBytes('')).toBe(0);
  });

  it('sees a swap device past the header line', () => {
    expect(hasSwap(NO_SWAP)).toBe(false);
    expect(hasSwap(SWAP)).toBe(true);
    expect(hasSwap('')).toBe(false);
  });
});

describe('MemoryReclaimer', () => {
  it('asks an exited container cgroup for its page cache, after the delay', async () => {
    const c = group('tern/c1', 300 << 20, 20 << 20);
    const parent = group('tern', 400 << 20);
    const r = reclaimer();
    r.containerExited('c1');
    expect(asked(c)).toBe('');
    await sleep(80);
    await r.idle();
    expect(asked(c)).toBe(String(280 << 20));
    expect(asked(parent)).toBe('');
  });

  it('reclaims the parent once the container is gone (its pages moved there)', async () => {
    const parent = group('tern', 100 << 20, 10 << 20);
    const r = reclaimer();
    r.containerExited('gone');
    await sleep(80);
    await r.idle();
    expect(asked(parent)).toBe(String(90 << 20));
  });

  it('never reclaims the parent when the guest has swap (anonymous memory of running containers could go)', async () => {
    const parent = group('tern', 100 << 20);
    const r = reclaimer({ swaps: SWAP });
    r.containerExited('gone');
    await sleep(80);
    await r.idle();
    expect(asked(parent)).toBe('');
  });

  it('postpones a due reclaim while containers are being started', async () => {
    const c = group('tern/c1', 8 << 20);
    const r = reclaimer();
    r.containerExited('c1');
    await sleep(20);
    r.activity();
    await sleep(20);
    expect(asked(c)).toBe('');
    await sleep(60);
    await r.idle();
    expect(asked(c)).toBe(String(8 << 20));
  });

  it('reclaims the parent once after a quiet time', async () => {
    const parent = group('tern', 64 << 20);
    const r = reclaimer({ idleMs: 40 });
    r.activity();
    await sleep(100);
    await r.idle();
    expect(asked(parent)).toBe(String(64 << 20));
  });

  it('does nothing while disabled (a template warming up), and nothing is left pending', async () => {
    const c = group('tern/c1', 8 << 20);
    const r = reclaimer({ enabled: false, idleMs: 20 });
    r.containerExited('c1');
    r.activity();
    await sleep(80);
    await r.idle();
    expect(asked(c)).toBe('');
    r.setEnabled(true);
    r.containerExited('c1');
    r.setEnabled(false);
    await sleep(80);
    expect(asked(c)).toBe('');
  });

  it('leaves less page cache than the minimum (it seldom frees a whole 2 MiB block the host is told about)', async () => {
    const c = group('tern/c1', RECLAIM_MIN_BYTES - 4096);
    const parent = group('tern', RECLAIM_MIN_BYTES - 4096);
    const left: string[] = [];
    const swapsFile = path.join(root, 'swaps');
    fs.writeFileSync(swapsFile, NO_SWAP);
    const log = { info: () => undefined, debug: (obj: object) => left.push((obj as { cgroup: string }).cgroup) };
    const r = new MemoryReclaimer({ cgroupRoot: root, exitDelayMs: 30, idleMs: 40, swapsFile, log });
    reclaimers.push(r);
    r.containerExited('c1');
    // Both were looked at (the exited container, then the parent when quiet) and left.
    await vi.waitFor(() => expect(left.sort()).toEqual(['tern', 'tern/c1']), { timeout: 5000 });
    await r.idle();
    expect(asked(c)).toBe('');
    expect(asked(parent)).toBe('');
    // At the minimum it is reclaimed.
    group('tern/c1', RECLAIM_MIN_BYTES);
    r.containerExited('c1');
    await vi.waitFor(() => expect(asked(c)).toBe(String(RECLAIM_MIN_BYTES)), { timeout: 5000 });
  });

  it('skips a cgroup without page cache', async () => {
    const c = group('tern/c1', 0);
    const r = reclaimer();
    r.containerExited('c1');
    await sleep(80);
    await r.idle();
    expect(asked(c)).toBe('');
  });
});
