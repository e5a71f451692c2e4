// Churn: many pods started and removed through containerd, back to back and
// all at once, leave nothing behind (no QEMU, shim, mount, socket, FIFO,
// cgroup or state file), and every run gives the right answer. Each start is
// a clone of the default template, as in production. (Through CRI:
// churn-cri.test.ts.)
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importTestImage, startContainerd, type Containerd } from './harness/containerd.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

const RUNTIME = 'io.containerd.tern.v2';
const SEQUENTIAL = 100;
const PARALLEL = 20;

describe('churn', () => {
  let c: Containerd;
  let image: string;

  beforeAll(async () => {
    c = await startContainerd({ extraPath: [join(repoRoot(), 'build', 'bin')] });
    image = await importTestImage(c);
    // One start first, so that the template exists before the snapshot.
    const warm = await c.ctr(['run', '--rm', '--runtime', RUNTIME, image, 'churn-warm', 'true'], { timeoutMs: 180_000 });
    expect(warm.code).toBe(0);
  }, 240_000);
  afterAll(async () => {
    await c?.stop();
  });

  it(
    `${SEQUENTIAL} pods in a row: each answers with its own number and exit code, and nothing is left`,
    async () => {
      const before = await snapshot({ scope: [c.dir, '/run/tern'] });
      for (let i = 0; i < SEQUENTIAL; i++) {
        const r = await c.ctr(['run', '--rm', '--runtime', RUNTIME, image, `churn-${i}`, 'sh', '-c', `echo run-${i}; exit ${i % 7}`], { timeoutMs: 120_000 });
        expect(r.stderr).toBe('');
        expect(r.stdout).toBe(`run-${i}\n`);
        expect(r.code).toBe(i % 7);
      }
      await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 20_000 });
    },
    SEQUENTIAL * 60_000,
  );

  it(`${PARALLEL} pods at once: each answers with its own number and exit code, and nothing is left`, async () => {
    const before = await snapshot({ scope: [c.dir, '/run/tern'] });
    const results = await Promise.all(
      Array.from({ length: PARALLEL }, (_, i) =>
        c.ctr(['run', '--rm', '--runtime', RUNTIME, image, `churn-par-${i}`, 'sh', '-c', `echo par-${i}; exit ${i % 5}`], { timeoutMs: 400_000 }),
      ),
    );
    results.forEach((r, i) => {
      expect(r.stderr, `pod ${i}`).toBe('');
      expect(r.stdout, `pod ${i}`).toBe(`par-${i}\n`);
      expect(r.code, `pod ${i}`).toBe(i % 5);
    });
    await expectNoLeaks(before, { scope: [c.dir, '/run/tern'], timeoutMs: 30_000 });
  }, 600_000);
});
