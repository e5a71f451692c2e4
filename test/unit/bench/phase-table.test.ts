// make bench's phase table from shim log lines as containerd's log holds them:
// each row the step since the row above (wall and CPU), medians over runs,
// a run whose lines are incomplete left out.
import { describe, expect, it } from 'vitest';
import { createSplit, phaseTable } from '../../../bench/phase-table';

const T = 1_800_000_000_000;

function runLog(id: string, t0: number, k: number): string {
  const line = (dt: number, msg: string, fields: Record<string, unknown>) =>
    `time="x" level=info msg=${JSON.stringify({ level: 30, time: t0 + dt, sandbox: id, ...fields, msg })}`;
  return [
    line(100, 'shim serving', { startedAt: new Date(t0 + 40).toISOString(), cpu: { shimMs: 50 * k } }),
    line(900, 'container created', {
      container: id,
      cpu: { shimMs: 200 * k, vmMs: 700 * k },
      createMs: { host: { layers: 40 * k, rootfs: 50 * k, agent: 300 * k }, guest: { spec: 2 * k, rootfs: 90 * k, launched: 250 * k } },
    }),
    line(1000, 'container started', {
      container: id,
      sinceBootMs: 850,
      templateReady: 10,
      vmLaunched: 200,
      agentAnswered: 400,
      identityAdopted: 600,
      vmReady: 610,
      cpu: { shimMs: 210 * k, vmMs: 750 * k },
      phaseCpu: {
        templateReady: { shimMs: 80 * k, vmMs: null },
        vmLaunched: { shimMs: 120 * k, vmMs: 150 * k },
        agentAnswered: { shimMs: 130 * k, vmMs: 300 * k },
        identityAdopted: { shimMs: 150 * k, vmMs: 500 * k },
        vmReady: { shimMs: 160 * k, vmMs: 510 * k },
      },
    }),
    line(1100, 'process exited', { container: id, cpu: { shimMs: 220 * k, vmMs: 800 * k } }),
    line(1150, 'destroying sandbox', { cpu: { shimMs: 230 * k, vmMs: 820 * k } }),
    line(1300, 'sandbox destroyed', { cpu: { shimMs: 260 * k } }),
  ].join('\n');
}

describe('phase table', () => {
  it('gives each phase its time since ctr ran, its step and the CPU of the step, as medians', () => {
    const log = [runLog('bench-tern-template-0', T, 1), runLog('bench-tern-template-1', T + 10_000, 1), runLog('bench-runc-0', T, 1)].join('\n');
    const windows = new Map([
      ['bench-tern-template-0', { start: T, end: T + 1400 }],
      ['bench-tern-template-1', { start: T + 10_000, end: T + 11_400 }],
      ['bench-tern-template-2', { start: T + 20_000, end: T + 21_400 }], // no lines: left out
    ]);
    const table = phaseTable(log, 'bench-tern-template-', windows)!;
    const rows = Object.fromEntries(
      table
        .split('\n')
        .slice(2, -1)
        .map((l) => {
          const cols = l.trimEnd().split(/\s{2,}/);
          return [cols[0], cols.slice(1)];
        }),
    );
    expect(table.split('\n')[0]).toContain('median of 2 runs');
    expect(rows['shim serving (Task API up)']).toEqual(['100', '60', '50']);
    // The boot began 850 ms before the container started: at 150 ms.
    expect(rows['QEMU launched (restored/adopted)']).toEqual(['350', '190', '40', '150']);
    expect(rows['agent answered']).toEqual(['550', '200', '10', '150']);
    expect(rows['container created (layers, volumes, agent)']).toEqual(['900', '140', '40', '190']);
    expect(rows['delete: sandbox gone']).toEqual(['1300', '150', '30']);
    expect(rows['ctr returned']).toEqual(['1400', '100']);
    expect(table.split('\n').at(-1)).toBe('sum of the medians: shim 260 ms CPU, QEMU 820 ms CPU');
  });

  it("a pod that joined a running shim process: the CPU the process had used before it is not the run's", () => {
    // The same run, in a process that had used 1000 ms of CPU for other pods when this pod's start reached it.
    const joined = runLog('bench-tern-template-0', T, 1)
      .replace(/"shimMs":(\d+)/g, (_m, ms: string) => `"shimMs":${Number(ms) + 1000}`)
      .replace('"startedAt"', '"startedCpu":{"shimMs":1000},"startedAt"');
    const table = phaseTable(joined, 'bench-tern-template-', new Map([['bench-tern-template-0', { start: T, end: T + 1400 }]]))!;
    const shimCpu = (phase: string) =>
      table
        .split('\n')
        .find((l) => l.startsWith(phase))
        ?.trimEnd()
        .split(/\s{2,}/)[3];
    expect(shimCpu('shim took the pod')).toBe('0');
    expect(shimCpu('shim serving (Task API up)')).toBe('50');
    expect(table.split('\n').at(-1)).toBe('sum of the medians: shim 260 ms CPU, QEMU 820 ms CPU');
  });

  it('is undefined when no run of the path has its lines', () => {
    expect(phaseTable('', 'bench-tern-cold-', new Map([['bench-tern-cold-0', { start: T, end: T + 1 }]]))).toBeUndefined();
  });
});

describe('create split', () => {
  it("gives the medians of the host's and the guest's create steps, the warm-up run left out", () => {
    const log = [
      runLog('bench-tern-pool-0', T, 1),
      runLog('bench-tern-pool-1', T, 3),
      runLog('bench-tern-pool-2', T, 2),
      runLog('bench-tern-pool-warmup', T, 100),
    ].join('\n');
    expect(createSplit(log, 'bench-tern-pool-')).toBe(
      [
        'tern-pool "container created" split (median of 3 runs; ms since that side\'s create began, at the end of each step):',
        '  host:  layers 80, rootfs 100, agent 600',
        '  guest: spec 4, rootfs 180, launched 500',
      ].join('\n'),
    );
  });

  it('is undefined when no line carries the split', () => {
    expect(createSplit(runLog('bench-runc-0', T, 1), 'bench-tern-pool-')).toBeUndefined();
  });
});
