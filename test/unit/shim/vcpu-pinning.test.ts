import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logging';
import { formatCpuList } from '../../../src/shim/cpu-list';
import { VcpuPinning } from '../../../src/shim/vcpu-pinning';

/** vCPU threads whose affinity is a map; `failOn` makes setting that thread's fail once. */
function fakeThreads(tids: number[]) {
  const affinity = new Map<number, string>(tids.map((t) => [t, '0-3']));
  const state = { calls: 0, queries: 0, failOn: undefined as number | undefined, tids };
  const ops = {
    vcpuThreads: async () => {
      state.queries++;
      return [...state.tids];
    },
    floating: () => [0, 1, 2, 3],
    setAffinity: async (tid: number, cpus: readonly number[]) => {
      state.calls++;
      if (tid === state.failOn) {
        state.failOn = undefined;
        throw new Error(`taskset ${tid}: no such process`);
      }
      affinity.set(tid, formatCpuList(cpus));
    },
  };
  return { ops, affinity, state };
}

describe('VcpuPinning', () => {
  it('touches nothing while no container is pinned', async () => {
    const { ops, state } = fakeThreads([11, 12]);
    const p = new VcpuPinning(ops, silentLogger);
    await p.remove('a');
    await p.set('b', undefined);
    await p.refresh();
    expect(state).toMatchObject({ calls: 0, queries: 0 });
    expect(p.pinned).toBe(false);
  });

  it('pins every vCPU thread to the union of the containers, and floats them again when the last goes', async () => {
    const { ops, affinity } = fakeThreads([11, 12, 12]);
    const p = new VcpuPinning(ops, silentLogger);
    await p.set('a', [1]);
    expect([...affinity.values()]).toEqual(['1', '1']);
    expect(p.inForce).toBe('1');
    await p.set('b', [3]);
    expect([...affinity.values()]).toEqual(['1,3', '1,3']);
    await p.set('a', [0, 1]);
    expect(affinity.get(11)).toBe('0-1,3');
    await p.remove('b');
    expect(affinity.get(12)).toBe('0-1');
    expect(p.of('a')).toEqual([0, 1]);
    await p.remove('a');
    expect([...affinity.values()]).toEqual(['0-3', '0-3']);
    expect(p.pinned).toBe(false);
  });

  it('does not run the helper again for an unchanged union', async () => {
    const { ops, state } = fakeThreads([11]);
    const p = new VcpuPinning(ops, silentLogger);
    await p.set('a', [1]);
    await p.set('a', [1]);
    await p.set('b', [1]);
    expect(state.calls).toBe(1);
  });

  it('pins hot-plugged vCPU threads on refresh while a pinning is in force', async () => {
    const { ops, affinity, state } = fakeThreads([11]);
    const p = new VcpuPinning(ops, silentLogger);
    await p.set('a', [2]);
    state.tids.push(13);
    affinity.set(13, '0-3');
    await p.refresh();
    expect(affinity.get(13)).toBe('2');
    await p.remove('a');
    state.tids.push(14);
    affinity.set(14, '0-3');
    const calls = state.calls;
    await p.refresh();
    expect(state.calls).toBe(calls);
  });

  it('a change that fails part way is undone and its error thrown', async () => {
    const { ops, affinity, state } = fakeThreads([11, 12]);
    const p = new VcpuPinning(ops, silentLogger);
    state.failOn = 12;
    await expect(p.set('a', [1])).rejects.toThrow(/taskset 12/);
    // thread 11 had been pinned: it floats again, and nothing counts as pinned
    expect([...affinity.values()]).toEqual(['0-3', '0-3']);
    expect(p.pinned).toBe(false);
    expect(p.of('a')).toBeUndefined();

    await p.set('a', [1]);
    state.failOn = 11;
    await expect(p.set('a', [2])).rejects.toThrow(/taskset 11/);
    expect([...affinity.values()]).toEqual(['1', '1']);
    expect(p.of('a')).toEqual([1]);
  });
});
