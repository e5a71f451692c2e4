import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Vm } from '../../../../src/hypervisor/hypervisor';
import type { AgentClient } from '../../../../src/shim/agent-client';
import { warmUpPooledVm } from '../../../../src/shim/pool/warm-up';

const root = mkdtempSync(join(tmpdir(), 'tern-warmup-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A fresh pooled VM directory. */
const vmDir = () => mkdtempSync(join(root, `vm${++n}-`));

type Fail = Partial<Record<'attach' | 'detach' | 'insert' | 'eject' | 'create' | 'start' | 'wait' | 'remove', Error>>;

/** A VM and an agent that record each call, and fail the ones named. */
function fakes(fail: Fail = {}) {
  const calls: string[] = [];
  const step = async <T>(name: keyof Fail, what: string, value: T): Promise<T> => {
    calls.push(what);
    if (fail[name]) throw fail[name];
    return value;
  };
  const vm = {
    attachBlock: (d: { id: string; path: string; readOnly: boolean; serial: string }) =>
      step('attach', `attach ${d.id} ${d.path} ro=${d.readOnly} ${d.serial}`, undefined),
    detachBlock: (id: string) => step('detach', `detach ${id}`, undefined),
    insertDisk: (path: string, readOnly: boolean) => step('insert', `insert ${path} ${statSync(path).size} ro=${readOnly}`, 'tern-rw-slot'),
    ejectDisk: (serial: string) => step('eject', `eject ${serial}`, undefined),
  } as unknown as Vm;
  const agent = {
    createContainer: (id: string, spec: string, layers: { serial: string }[], _io: unknown, _files: unknown, rootfs?: { serial: string; fs_type: string }) =>
      step('create', `create ${id} ${layers.map((l) => l.serial).join(',')} rw=${rootfs?.serial}/${rootfs?.fs_type} ${JSON.parse(spec).process.args[0]}`, {
        pid: 7,
      }),
    startContainer: (id: string) => step('start', `start ${id}`, { pid: 7 }),
    waitProcess: (id: string) => step('wait', `wait ${id}`, { exit_status: 1, exited_at_unix_nano: 0 }),
    removeContainer: (id: string) => step('remove', `remove ${id}`, undefined),
  } as unknown as AgentClient;
  return { vm, agent, calls };
}

describe('warmUpPooledVm', () => {
  it('runs one container on a hot-plugged copy of the guest image and a writable disk in the slot, then removes them all', async () => {
    const { vm, agent, calls } = fakes();
    const dir = vmDir();
    const rw = join(dir, 'warmup-rootfs.img');
    await expect(warmUpPooledVm(vm, agent, '/guest/guest.erofs', dir, 64)).resolves.toBe(1);
    expect(calls).toEqual([
      'attach warmup /guest/guest.erofs ro=true tern-warmup',
      // the slot's size, whatever the warm-up's filesystem
      `insert ${rw} ${64 * 1024 * 1024} ro=false`,
      'create tern-warmup tern-warmup rw=tern-rw-slot/ext4 /sbin/tern-vmfork',
      'start tern-warmup',
      'wait tern-warmup',
      'remove tern-warmup',
      'eject tern-rw-slot',
      'detach warmup',
    ]);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('fails, undoing what it did, when the VM has no free writable slot', async () => {
    const { vm, agent, calls } = fakes();
    (vm as unknown as { insertDisk: () => Promise<undefined> }).insertDisk = async () => undefined;
    const dir = vmDir();
    await expect(warmUpPooledVm(vm, agent, '/g', dir, 64)).rejects.toThrow(/no free writable slot/);
    expect(calls).toEqual(['attach warmup /g ro=true tern-warmup', 'remove tern-warmup', 'detach warmup']);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('attaches nothing more, removes nothing in the guest and leaves no file when the disk cannot be attached', async () => {
    const { vm, agent, calls } = fakes({ attach: new Error('no free hot-plug slot') });
    const dir = vmDir();
    await expect(warmUpPooledVm(vm, agent, '/g', dir, 64)).rejects.toThrow('no free hot-plug slot');
    expect(calls).toEqual(['attach warmup /g ro=true tern-warmup']);
    expect(existsSync(join(dir, 'warmup-rootfs.img'))).toBe(false);
  });

  it('keeps the run failure when cleanup fails too, and still empties the slot and unplugs the layer', async () => {
    const { vm, agent, calls } = fakes({ start: new Error('launcher died'), remove: new Error('remove failed') });
    const dir = vmDir();
    await expect(warmUpPooledVm(vm, agent, '/g', dir, 64)).rejects.toThrow('launcher died');
    expect(calls.slice(-3)).toEqual(['remove tern-warmup', 'eject tern-rw-slot', 'detach warmup']);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('fails when cleanup after a good run fails, after trying every cleanup step', async () => {
    const { vm, agent, calls } = fakes({ remove: new Error('remove failed') });
    const dir = vmDir();
    await expect(warmUpPooledVm(vm, agent, '/g', dir, 64)).rejects.toThrow('remove failed');
    expect(calls.at(-1)).toBe('detach warmup');
    expect(readdirSync(dir)).toEqual([]);
  });
});
