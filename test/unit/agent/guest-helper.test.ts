// The agent's running helper (tern-vmfork --serve), compiled here and driven
// as the agent drives it, on mount, remount, move, umount and a block device's cache only (identity would set this
// host's clock and hostname): one process for every request, answers in
// order, the helper's error named, bad fields refused before they are sent,
// and a helper that died replaced at the next request.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMountPoint } from '../../../src/agent/container/rootfs';
import { GuestHelper, helperMounter } from '../../../src/agent/guest-helper';

let dir: string;
let helper: GuestHelper;
const bin = () => join(dir, 'tern-vmfork');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-helper-'));
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', bin(), join(__dirname, '../../../guest-image/init/tern-vmfork.c')]);
  helper = new GuestHelper(bin());
  helper.start();
});
afterAll(() => {
  helper.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('guest helper', () => {
  it('mounts and unmounts through mount(2) in its one process', async () => {
    const m = helperMounter(helper);
    const target = join(dir, 'mnt');
    mkdirSync(target);
    const pid = (helper as unknown as { child: { pid: number } }).child.pid;
    await m.mount('tmpfs', target, 'tmpfs', { data: 'mode=0700,size=1m' });
    expect(await isMountPoint(target)).toBe(true);
    writeFileSync(join(target, 'f'), 'x');
    await m.umount(target);
    expect(await isMountPoint(target)).toBe(false);
    expect(existsSync(join(target, 'f'))).toBe(false);
    await m.mount('tmpfs', target, 'tmpfs', { readOnly: true });
    expect(() => writeFileSync(join(target, 'g'), 'x')).toThrow(/EROFS/);
    await m.umount(target, { lazy: true });
    expect(await isMountPoint(target)).toBe(false);
    expect((helper as unknown as { child: { pid: number } }).child.pid).toBe(pid);
  });

  it('remounts read-only and writable, and moves a mount', async () => {
    const m = helperMounter(helper);
    const target = join(dir, 'mnt-rm');
    const moved = join(dir, 'mnt-moved');
    mkdirSync(target);
    mkdirSync(moved);
    await m.mount('tmpfs', target, 'tmpfs', { data: 'size=1m' });
    await m.remount(target, { readOnly: true, data: 'size=2m' });
    expect(() => writeFileSync(join(target, 'f'), 'x')).toThrow(/EROFS/);
    await m.remount(target, { readOnly: false });
    writeFileSync(join(target, 'f'), 'kept');
    await m.move(target, moved);
    expect(await isMountPoint(target)).toBe(false);
    expect(readFileSync(join(moved, 'f'), 'utf8')).toBe('kept');
    await expect(m.move(target, moved)).rejects.toThrow('tern-vmfork: move: Invalid argument');
    await expect(m.remount(join(dir, 'nothing-here'), { readOnly: true })).rejects.toThrow('tern-vmfork: remount: No such file or directory');
    await m.umount(moved);
    expect(await isMountPoint(moved)).toBe(false);
  });

  it("names the helper's failure, and refuses a field it could not send", async () => {
    await expect(helperMounter(helper).umount(join(dir, 'nothing-here'))).rejects.toMatchObject({
      code: 'Internal',
      message: 'tern-vmfork: umount: No such file or directory',
    });
    await expect(helper.request(['identity', 'a\tb'])).rejects.toMatchObject({ code: 'InvalidArgument' });
    await expect(helper.request(['frobnicate'])).rejects.toThrow('tern-vmfork: frobnicate: Invalid argument');
  });

  it("drops a block device's cache, so a file changed behind the device is read anew", async () => {
    const img = join(dir, 'disk.img');
    writeFileSync(img, Buffer.alloc(1 << 20, 'a'));
    const loop = execFileSync('losetup', ['--find', '--show', img]).toString().trim();
    // Held open: the kernel keeps a block device's cache while anyone has it open.
    const fd = openSync(loop, 'r');
    try {
      const first4 = () => {
        const b = Buffer.alloc(4);
        readSync(fd, b, 0, 4, 0);
        return b.toString();
      };
      expect(first4()).toBe('aaaa');
      const w = openSync(img, 'r+');
      writeSync(w, 'bbbb', 0);
      closeSync(w);
      expect(first4()).toBe('aaaa');
      await helperMounter(helper).flushBuffers(loop);
      expect(first4()).toBe('bbbb');
      await expect(helperMounter(helper).flushBuffers(join(dir, 'no-device'))).rejects.toThrow('tern-vmfork: flushbufs: open: No such file or directory');
    } finally {
      closeSync(fd);
      execFileSync('losetup', ['-d', loop]);
    }
  });

  it('a helper that died is replaced at the next request', async () => {
    const child = (helper as unknown as { child: { pid: number; kill(s: string): void; once(e: string, f: () => void): void } }).child;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await gone;
    const target = join(dir, 'mnt2');
    mkdirSync(target);
    await helperMounter(helper).mount('tmpfs', target, 'tmpfs', {});
    expect(await isMountPoint(target)).toBe(true);
    await helperMounter(helper).umount(target);
  });
});
