// The "memory after a burst" table: one aligned line per runtime, with its
// figures in MiB, or FAILED and why.
import { describe, expect, it } from 'vitest';
import { burstReport } from '../../../bench/memory-burst-report';

describe('burstReport', () => {
  it('gives before, peak and after per runtime, a failed runtime as FAILED with its error', () => {
    const out = burstReport(
      [
        { runtime: 'tern', measure: 'QEMU RSS', figures: { beforeMiB: 336.71, peakMiB: 643.2, afterMiB: 299.06 } },
        { runtime: 'gvisor', measure: 'pod cgroup memory', error: 'runsc: not found' },
      ],
      'a burst',
      30,
    );
    expect(out.split('\n')).toEqual([
      'memory after a burst (MiB): a burst',
      'runtime  measured           before  peak   30 s after  status',
      'tern     QEMU RSS           336.7   643.2  299.1       ok',
      'gvisor   pod cgroup memory  -       -      -           FAILED: runsc: not found',
    ]);
  });
});
