// Crash at every ledger step, for real: the shim kills itself (SIGKILL, the
// test-only fault point TERN_FAULT_AFTER_STEP) right after a step's resource
// is acquired while a pod starts through containerd's CRI with its own
// network namespace. containerd then runs `delete`, which must undo the
// ledger from disk: no QEMU, shim, tap, mount, cgroup or sandbox directory is
// left. Everything runs inside a network namespace this test creates.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { podConfig } from '../cri';
import { FAULT_ENV, type StepKind } from '../../src/shim/teardown-ledger';
import { cniResultsLeft, removeCgroupTree, startCriEnv, stopCriEnv } from './harness/cri-env.js';
import { expectNoLeaks, snapshot } from './harness/leaks.js';
import { repoRoot } from './harness/paths.js';

const HANDLER = 'tern';
const SCOPE_EXTRA = '/run/tern';
/** The steps a CRI pod's start records here (templates on, no warm pool), in order: its layer pins and writable layers, then the boot's. */
const STEPS: StepKind[] = ['layer-pins', 'scratch-disks', 'template-builds', 'host-cgroup', 'shared-dir', 'pod-network', 'vm'];

describe('a shim killed right after each ledger step leaves nothing once containerd has run delete', () => {
  for (const step of STEPS) {
    it(`after ${step}`, async () => {
      const cgroupRoot = `tern-crash-${randomBytes(3).toString('hex')}`;
      const env = await startCriEnv({
        runtimes: { [HANDLER]: 'io.containerd.tern.v2' },
        extraPath: [join(repoRoot(), 'build', 'bin')],
        clientTimeoutMs: 120_000,
        env: { [FAULT_ENV]: step },
      });
      try {
        const before = await snapshot({ scope: [env.c.dir, SCOPE_EXTRA] });
        const uid = randomUUID();
        const logDirectory = join(env.work, 'pods', `crash_${step}_${uid}`);
        mkdirSync(logDirectory, { recursive: true });
        const pod = podConfig({ name: `crash-${step}`, namespace: 'tern-test', uid, logDirectory, cgroupParent: `/${cgroupRoot}/pod${uid}` });
        const err = await env.cri.runPodSandbox(pod, HANDLER).then(
          () => undefined,
          (e: Error) => e,
        );
        // The shim died mid-start: containerd reports the failure and has run delete.
        // The shim died mid-Create (the connection closed), not some other failure.
        expect(err?.message ?? 'pod started').toMatch(/failed to create shim task: ttrpc: closed/);
        expect(await env.cri.listPodSandbox()).toEqual([]);
        // Files under /run/tern/sb (the sandbox directory's) and the writable layers', mounts, processes, interfaces, cgroups.
        await expectNoLeaks(before, { scope: [env.c.dir, SCOPE_EXTRA], timeoutMs: 30_000 });
      } finally {
        const problems = await stopCriEnv(env, cgroupRoot);
        expect(problems).toEqual([]);
        expect(removeCgroupTree(cgroupRoot)).toEqual([]);
        expect(cniResultsLeft()).toEqual([]);
      }
    });
  }
});
