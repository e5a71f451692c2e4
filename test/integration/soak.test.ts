// Soak, short: a few tern pods under CPU, memory and stdout load for a minute
// (the load `make soak` runs for longer with more pods; bench/soak-load.ts).
// Every sequence-numbered line a pod prints reaches ctr once and in order,
// every pod still runs at the end, the shims' memory stays bounded, a new pod
// starts during the load, and nothing is left afterwards.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runSoak, TERN_RUNTIME } from '../../bench/soak-load.js';
import { shimMemory, soakFailures, soakTable } from '../../bench/soak-report.js';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

const PODS = 4;
const DURATION_S = 60;
/** Per pod; under TCG on 2 cores each pod reaches about half of it, enough to keep the output path busy. */
const RATE_BYTES_PER_S = 200_000;
/**
 * Bound on a shim's RSS growth from the first to the last sample. Measured on
 * this 2-core TCG host: a shim under this load starts at ~58 MiB RSS and moves
 * by a few MiB between samples (V8's heap grows and shrinks with the stream);
 * growth first to last was at most 2.9 MiB here in 60 s, and at most 8.2 MiB
 * with 20 pods over 10 minutes (make soak). A shim keeping the stream (~6 MB
 * per pod in this test) or leaking per chunk would pass 32 MiB soon.
 */
const MAX_GROWTH_MIB = 32;

describe('soak', () => {
  let c: Containerd;
  let image: string;

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
    // One start first, so that the template exists before the snapshot.
    const warm = await c.ctr(['run', '--rm', '--runtime', TERN_RUNTIME, image, 'soak-warm', 'true'], { timeoutMs: 180_000 });
    expect(warm.code).toBe(0);
  }, 240_000);
  afterAll(async () => {
    await c?.stop();
  });

  it(`${PODS} pods for ${DURATION_S} s: every line arrives once and in order, pods keep running, shim memory bounded, a new pod starts, nothing left`, async () => {
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });
    const r = await runSoak(c, image, {
      pods: PODS,
      durationS: DURATION_S,
      rateBytesPerS: RATE_BYTES_PER_S,
      lineBytes: 128,
      memMiB: 64,
      sampleEveryS: 10,
      probes: 1,
      startTimeoutMs: 180_000,
      log: (m) => console.error(m),
    });
    console.log(soakTable(r));
    for (const p of r.pods) {
      expect(p.endSeq, `${p.id} printed END`).toBeGreaterThan(0);
      expect({ id: p.id, lost: p.lost, duplicated: p.duplicated, malformed: p.malformed, lines: p.lines }).toEqual({
        id: p.id,
        lost: 0,
        duplicated: 0,
        malformed: 0,
        lines: p.endSeq,
      });
      expect(p.badStatuses, p.id).toEqual([]);
      expect(p.finalStatus, p.id).toBe('RUNNING');
    }
    expect(r.samples.length).toBeGreaterThanOrEqual(DURATION_S / 10);
    for (const [i, m] of shimMemory(r).entries()) {
      expect(Number.isFinite(m.first) && Number.isFinite(m.last), `${r.pods[i]!.id}: shim memory read`).toBe(true);
      expect((m.last - m.first) / 1024, `${r.pods[i]!.id}: shim RSS growth (MiB)`).toBeLessThan(MAX_GROWTH_MIB);
    }
    const tern = r.probes.filter((p) => p.runtime === 'tern');
    expect(tern.length).toBe(1);
    expect(tern[0]!.ok, tern[0]!.error).toBe(true);
    expect(tern[0]!.inLoad).toBe(true);
    expect(soakFailures(r, MAX_GROWTH_MIB)).toEqual([]);
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 30_000 });
  }, 420_000);
});
