// A template store on a fresh directory under /dev/shm (a real tmpfs, so the
// store never mounts one) for each test, and a build that counts its calls:
// what the template store's test files share.
import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, expect, vi } from 'vitest';
import { silentLogger } from '../../../src/common/logging';
import { TemplateStore } from '../../../src/shim/templates/store';
import { buildFiles, TMPFS_MAGIC } from './template-fixtures';

export const MEM = 8;
export const KEY = 'a1b2c3d4e5f60718293a4b5c';
export const OTHER = 'ffffffffffffffffffffffff';
/** Above the largest pid_max Linux allows (2^22): no process has it. */
export const NO_SUCH_PID = 4_194_304;

/** Registers the hooks that give each test its own store; `use` hears each one (and its directory). */
export function storeOnShmEachTest(use: (store: TemplateStore, tmp: string) => void): void {
  beforeAll(() => {
    // Were /dev/shm not a tmpfs, ensure() would mount one: refuse to run instead.
    expect(fs.statfsSync('/dev/shm').type).toBe(TMPFS_MAGIC);
  });
  let tmp = '';
  beforeEach(() => {
    tmp = fs.mkdtempSync('/dev/shm/tern-unit-store-');
    use(new TemplateStore(join(tmp, 'store'), silentLogger), tmp);
  });
  afterEach(() => {
    vi.restoreAllMocks();
    fs.rmSync(tmp, { recursive: true, force: true });
  });
}

/** A build that writes a template's files (after delayMs), then fails if asked; `calls` lists the directories it was given. */
export function countingBuild(opts: { delayMs?: number; fail?: string } = {}) {
  const calls: string[] = [];
  const build = async (buildDir: string) => {
    calls.push(buildDir);
    if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
    buildFiles(buildDir, MEM);
    if (opts.fail) throw new Error(opts.fail);
    return { memoryMiB: MEM, buildMs: 0, shape: { test: true } };
  };
  return { calls, build };
}
