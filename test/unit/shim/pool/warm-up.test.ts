import { describe, expect, it } from 'vitest';
import type { Vm } from '../../../../src/hypervisor/hypervisor';
import type { AgentClient } from '../../../../src/shim/agent-client';
import { warmUpPooledVm } from '../../../../src/shim/pool/warm-up';

type Fail = Partial<Record<'attach' | 'detach' | 'create' | 'start' | 'wait' | 'remove', Error>>;

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
  } as unknown as Vm;
  const agent = {
    createContainer: (id: string, spec: string, layers: { serial: string }[]) =>
      step('create', `create ${id} ${layers.map((l) => l.serial).join(',')} ${JSON.parse(spec).process.args[0]}`, { pid: 7 }),
    startContainer: (id: string) => step('start', `start ${id}`, { pid: 7 }),
    waitProcess: (id: string) => step('wait', `wait ${id}`, { exit_status: 1, exited_at_unix_nano: 0 }),
    removeContainer: (id: string) => step('remove', `remove ${id}`, undefined),
  } as unknown as AgentClient;
  return { vm, agent, calls };
}

describe('warmUpPooledVm', () => {
  it('runs one container on a hot-plugged copy of the guest image, then removes both', async () => {
    const { vm, agent, calls } = fakes();
    await expect(warmUpPooledVm(vm, agent, '/guest/guest.erofs')).resolves.toBe(1);
    expect(calls).toEqual([
      'attach warmup /guest/guest.erofs ro=true tern-warmup',
      'create tern-warmup tern-warmup /sbin/tern-vmfork',
      'start tern-warmup',
      'wait tern-warmup',
      'remove tern-warmup',
      'detach warmup',
    ]);
  });

  it('attaches nothing more and removes nothing when the disk cannot be attached', async () => {
    const { vm, agent, calls } = fakes({ attach: new Error('no free hot-plug slot') });
    await expect(warmUpPooledVm(vm, agent, '/g')).rejects.toThrow('no free hot-plug slot');
    expect(calls).toEqual(['attach warmup /g ro=true tern-warmup']);
  });

  it('keeps the run failure when cleanup fails too, and still unplugs the disk', async () => {
    const { vm, agent, calls } = fakes({ start: new Error('launcher died'), remove: new Error('remove failed') });
    await expect(warmUpPooledVm(vm, agent, '/g')).rejects.toThrow('launcher died');
    expect(calls.slice(-2)).toEqual(['remove tern-warmup', 'detach warmup']);
  });

  it('fails when cleanup after a good run fails, after trying every cleanup step', async () => {
    const { vm, agent, calls } = fakes({ remove: new Error('remove failed') });
    await expect(warmUpPooledVm(vm, agent, '/g')).rejects.toThrow('remove failed');
    expect(calls.at(-1)).toBe('detach warmup');
  });
});
