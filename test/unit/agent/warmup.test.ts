// The template agent's warm-up: when it runs, and that it walks a container
// through create, start, wait, read and remove, removing it even when a step
// fails or its deadline passes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../../src/common/proto';
import { serviceMethods } from '../../../src/common/proto-service';
import { warmIdentityChecks } from '../../../src/agent/identity';
import { isTemplateBoot, warmCodecs, warmNodeInternals, warmUp, warmupSpec, WARMUP_ID } from '../../../src/agent/warmup';
import { translateSpec } from '../../../src/agent/container/plan-from-spec';

describe('agent warm-up', () => {
  it('runs only on a template boot', () => {
    expect(isTemplateBoot('console=ttyS0 quiet tern.template=1\n')).toBe(true);
    expect(isTemplateBoot('console=ttyS0 quiet\n')).toBe(false);
    expect(isTemplateBoot('tern.template=10')).toBe(false);
  });

  it('calls the container RPCs in order and removes the container even when one fails', async () => {
    const calls: string[] = [];
    const ok = await warmUp(async (method) => {
      calls.push(method);
      return method === 'WaitProcess' ? { exit_status: 2 } : {};
    });
    expect(ok).toBe(2);
    expect(calls).toEqual(['CreateContainer', 'StartContainer', 'WaitProcess', 'ReadStdout', 'ReadStderr', 'RemoveContainer']);
    calls.length = 0;
    await expect(
      warmUp(async (method) => {
        calls.push(method);
        if (method === 'StartContainer') throw new Error('no start');
        return {};
      }),
    ).rejects.toThrow('no start');
    expect(calls).toEqual(['CreateContainer', 'StartContainer', 'RemoveContainer']);
  });

  it('a warm-up whose process never exits ends at its deadline with DeadlineExceeded, and the container is removed', async () => {
    const calls: string[] = [];
    let waiting: (() => void) | undefined;
    const t0 = Date.now();
    const err = await warmUp(async (method) => {
      calls.push(method);
      // WaitProcess answers only once the container is removed (its process killed).
      if (method === 'WaitProcess') await new Promise<void>((r) => (waiting = r));
      if (method === 'RemoveContainer') waiting?.();
      return {};
    }, 50).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(err).toMatchObject({ code: 'DeadlineExceeded', message: 'the warm-up container did not finish within 50 ms' });
    expect(calls).toEqual(['CreateContainer', 'StartContainer', 'WaitProcess', 'RemoveContainer']);
  });

  it('its spec passes the same translation as a real container spec', () => {
    const { plan, warnings } = translateSpec(
      warmupSpec() as never,
      {
        rootfs: '/run/tern-agent/containers/x/rootfs',
        cgroup: { path: `/sys/fs/cgroup/tern/${WARMUP_ID}`, returnTo: '/sys/fs/cgroup' },
        terminal: false,
        statSource: () => 'dir',
        guestDevice: () => undefined,
      } as never,
    );
    expect(warnings).toEqual([]);
    expect(plan).toBeDefined();
  });
});

describe('codec warm-up', () => {
  it('builds every request and response type of the agent service once, each encoding and decoding', () => {
    const types = new Set(serviceMethods('tern.agent.v1.Agent').flatMap((m) => [m.req, m.res]));
    // AdoptIdentity's and DestroySandbox's: RPCs a template never serves itself.
    expect(types).toContain('tern.agent.v1.AdoptIdentityRequest');
    expect(types).toContain('tern.agent.v1.DestroySandboxRequest');
    expect(warmCodecs('tern.agent.v1.Agent')).toBe(types.size);
    // Built once, the codecs still work as before.
    const req = { hostname: 'h', machine_id: 'a'.repeat(32), entropy: Buffer.alloc(32, 7), realtime_ns: 5, mount_shared: true };
    expect(decode('tern.agent.v1.AdoptIdentityRequest', encode('tern.agent.v1.AdoptIdentityRequest', req))).toEqual(req);
  });

  it("runs AdoptIdentity's checks on a request that passes them", () => {
    expect(() => warmIdentityChecks()).not.toThrow();
  });
});

describe('node internals warm-up', () => {
  it('writes, rewrites and removes its file, leaving the directory as it was', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-warm-'));
    try {
      fs.writeFileSync(path.join(dir, 'other'), 'x');
      await warmNodeInternals(dir);
      expect(fs.readdirSync(dir)).toEqual(['other']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rejects, naming the file, when the directory cannot be written', async () => {
    const dir = path.join(os.tmpdir(), `tern-warm-missing-${process.pid}`);
    await expect(warmNodeInternals(dir)).rejects.toThrow(path.join(dir, 'tern-warmup-file'));
    expect(fs.existsSync(dir)).toBe(false);
  });
});
