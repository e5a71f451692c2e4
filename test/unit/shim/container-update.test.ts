import { describe, expect, it } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { silentLogger } from '../../../src/common/logging';
import { updateResources } from '../../../src/shim/container-update';
import type { RunningSandbox } from '../../../src/shim/running-sandbox';
import { VcpuPinning } from '../../../src/shim/vcpu-pinning';

/** A running sandbox reduced to what an update uses: the agent's calls, the resizer's growth and real pinning logic over fake threads. */
function fakePod(opts: { vcpus: number; agentFails?: boolean }) {
  const sent: string[] = [];
  const grown: number[] = [];
  const affinity = new Map<number, string>([[7, '0-3']]);
  const pinning = new VcpuPinning(
    {
      vcpuThreads: async () => [...affinity.keys()],
      floating: () => [0, 1, 2, 3],
      setAffinity: async (tid, cpus) => void affinity.set(tid, cpus.join(',')),
    },
    silentLogger,
  );
  let vcpus = opts.vcpus;
  const pod = {
    agent: {
      updateContainer: async (_id: string, json: string) => {
        sent.push(json);
        if (opts.agentFails) throw new TernError('InvalidArgument', 'guest refused');
      },
    },
    resizer: {
      growCpusTo: async (n: number) => {
        grown.push(n);
        vcpus = Math.max(vcpus, Math.min(n, 4));
      },
      get vcpuCount() {
        return vcpus;
      },
    },
    pinning,
  } as unknown as RunningSandbox;
  return { pod, sent, grown, affinity, pinning };
}
const hostCpus = () => [0, 1, 2, 3];

describe('updateResources and cpusets', () => {
  it('pins the vCPU threads to the host set, grows the VM to its size and gives the guest vCPUs 0..k-1', async () => {
    const f = fakePod({ vcpus: 1 });
    await updateResources(f.pod, 'c', JSON.stringify({ cpu: { cpus: '2-3', shares: 512 } }), hostCpus);
    expect(f.grown).toEqual([2]);
    expect(f.affinity.get(7)).toBe('2,3');
    expect(JSON.parse(f.sent[0]!)).toEqual({ cpu: { cpus: '0-1', shares: 512 } });
    // "" unpins: the threads float again
    await updateResources(f.pod, 'c', JSON.stringify({ cpu: { cpus: '' } }), hostCpus);
    expect(f.affinity.get(7)).toBe('0,1,2,3');
    expect(f.pinning.pinned).toBe(false);
  });

  it('leaves the pinning alone when the update does not name cpu.cpus', async () => {
    const f = fakePod({ vcpus: 2 });
    await updateResources(f.pod, 'c', JSON.stringify({ cpu: { cpus: '1' } }), hostCpus);
    await updateResources(f.pod, 'c', JSON.stringify({ memory: { limit: 1 << 26 } }), hostCpus);
    expect(f.affinity.get(7)).toBe('1');
    expect(f.sent[1]).toBe(JSON.stringify({ memory: { limit: 1 << 26 } }));
  });

  it('a bad cpuset fails as InvalidArgument naming it, before any work', async () => {
    const f = fakePod({ vcpus: 1 });
    for (const cpus of ['7', 'x-']) {
      const err = await updateResources(f.pod, 'c', JSON.stringify({ cpu: { cpus, quota: 200000 } }), hostCpus).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TernError);
      expect((err as TernError).code).toBe('InvalidArgument');
      expect((err as TernError).message).toContain(`cpu.cpus ${JSON.stringify(cpus)}`);
    }
    expect(f.grown).toEqual([]);
    expect(f.sent).toEqual([]);
    expect(f.affinity.get(7)).toBe('0-3');
  });

  it('puts the former pinning back when the guest refuses the update', async () => {
    const f = fakePod({ vcpus: 2, agentFails: true });
    await f.pinning.set('c', [1]);
    await expect(updateResources(f.pod, 'c', JSON.stringify({ cpu: { cpus: '3' } }), hostCpus)).rejects.toThrow(/guest refused/);
    expect(f.affinity.get(7)).toBe('1');
    expect(f.pinning.of('c')).toEqual([1]);
  });
});
