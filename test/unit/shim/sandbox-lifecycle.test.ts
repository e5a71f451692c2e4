// A sandbox's life without QEMU: a fake hypervisor driver whose VMs answer on
// real ttrpc agent endpoints, a fake pod cgroup, fake pool and template
// sources. Each boot path, a failure at each phase and destroy at each phase;
// after every case the ledger is empty, the sandbox directory and its mounts
// are gone, and every fake resource is released (needs root: the shared
// directory is a real tmpfs).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig, type TernConfig } from '../../../src/common/config';
import { internal } from '../../../src/common/errors';
import { decode } from '../../../src/common/proto';
import { silentLogger } from '../../../src/common/logging';
import type { VmExit, VmSpec } from '../../../src/hypervisor/hypervisor';
import type { PodCgroup } from '../../../src/shim/boot-env';
import type { BootSources } from '../../../src/shim/boot-sources';
import type { TakeGranted } from '../../../src/shim/pool/protocol';
import { Sandbox } from '../../../src/shim/sandbox';
import { readLedger } from '../../../src/shim/teardown-ledger';
import type { Template } from '../../../src/shim/templates/store';
import { mountsUnder, unmountAllUnder } from '../../../src/shim/volumes';
import { FakeDriver, type LaunchHow } from './fake-hypervisor';

const broken = (what: string) => async () => {
  throw internal(what);
};

class FakeCgroup implements PodCgroup {
  created = false;
  removed = false;
  readonly added: number[] = [];
  constructor(readonly name: string) {}
  create(): void {
    this.created = true;
  }
  add(pid: number): void {
    this.added.push(pid);
  }
  async removeWithin(): Promise<string[]> {
    this.removed = true;
    return [];
  }
}

class FakeSources implements BootSources {
  clones = { ok: 0, failed: 0 };
  constructor(
    private readonly pooled?: TakeGranted,
    private readonly tmpl?: Template,
  ) {}
  async takeFromPool(): Promise<TakeGranted | undefined> {
    return this.pooled;
  }
  async template(): Promise<Template | undefined> {
    return this.tmpl;
  }
  cloneSucceeded(): void {
    this.clones.ok++;
  }
  cloneFailed(): { restoreRefused: boolean; templateRemoved: boolean } {
    this.clones.failed++;
    return { restoreRefused: false, templateRemoved: false };
  }
}

let root: string;
let driver: FakeDriver;
let cgroup: FakeCgroup;
let called: string[];

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'tern-lifecycle-'));
  called = [];
  const noted = (m: string) => async () => {
    called.push(m);
    return new Uint8Array();
  };
  driver = new FakeDriver({
    Check: noted('Check'),
    SetHostname: noted('SetHostname'),
    AdoptIdentity: noted('AdoptIdentity'),
    DestroySandbox: noted('DestroySandbox'),
  });
  cgroup = new FakeCgroup('sb1');
});

afterEach(async () => {
  // A test that failed midway leaves its shared tmpfs mounted.
  await unmountAllUnder(root);
  rmSync(root, { recursive: true, force: true });
});

function config(): TernConfig {
  const cfg = defaultConfig();
  cfg.runtime.stateDir = root;
  cfg.agent.healthIntervalMs = 0;
  cfg.agent.bootTimeoutMs = 2000;
  cfg.agent.callTimeoutMs = 2000;
  cfg.metrics.eventsMaxMiB = 0;
  cfg.pool.size = 0;
  cfg.pool.dir = join(root, 'pool');
  cfg.factory.template = false;
  return cfg;
}

function sandbox(sources: BootSources = new FakeSources(), cfg = config()): Sandbox {
  return new Sandbox('ns', 'pod-1', join(root, 'sb', 'sb1'), cfg, driver, silentLogger, { cgroup, sources });
}

/** A pooled VM's directory as the warm pool hands it over (owned by the sandbox). */
function pooledVm(owner: string): TakeGranted {
  const dir = join(root, 'pool', 'vm-0123456789ab');
  mkdirSync(join(dir, 'vm'), { recursive: true });
  mkdirSync(join(dir, 'shared'));
  writeFileSync(join(dir, 'owner.json'), JSON.stringify({ owner, sandboxId: 'pod-1', takenAt: new Date().toISOString() }));
  return { ok: true, dir, name: 'vm-0123456789ab', pid: 4321, idleMs: 10 } as TakeGranted;
}

const template: Template = { key: 'k1', dir: '/t/k1', memoryPath: '/t/k1/memory', statePath: '/t/k1/state', record: {} as Template['record'] };

/** Nothing of the sandbox is left: ledger, directory, mounts, VMs, cgroup. */
function expectReleased(sb: Sandbox): void {
  expect(sb.state).toBe('stopped');
  expect(readLedger(sb.dir)).toEqual([]);
  expect(existsSync(sb.dir)).toBe(false);
  expect(mountsUnder(root)).toEqual([]);
  for (const vm of driver.vms) {
    expect(vm.stopped, `VM ${vm.spec.runDir} stopped`).toBe(true);
    expect(vm.cleaned, `VM ${vm.spec.runDir} cleaned up`).toBe(true);
  }
  expect(cgroup.removed).toBe(cgroup.created);
}

function failLaunch(when: (spec: VmSpec, how: LaunchHow) => boolean, err = internal('launch refused')): void {
  driver.beforeLaunch = async (spec, how) => {
    if (when(spec, how)) throw err;
  };
}

describe('sandbox lifecycle (fake hypervisor)', () => {
  it('cold boot: a running sandbox with every part, its steps in the ledger; destroy undoes them all', async () => {
    const sb = sandbox();
    const running = await sb.ensureReady();
    expect(sb.state).toBe('ready');
    expect(running.startPath).toBe('cold');
    expect(running.vm).toBe(driver.vms[0]);
    expect(running.sharedDir).toBe(join(sb.dir, 'shared'));
    expect(mountsUnder(sb.dir)).toEqual([join(sb.dir, 'shared')]);
    expect(readLedger(sb.dir).map((s) => s.kind)).toEqual(['host-cgroup', 'shared-dir', 'vm']);
    expect(JSON.parse(readFileSync(join(sb.dir, 'sandbox.json'), 'utf8'))).toMatchObject({ id: 'pod-1', startPath: 'cold', vmDir: join(sb.dir, 'vm') });
    // QEMU, not the shim (which serves other pods too), is moved into the pod's cgroup, as soon as it is spawned.
    expect(cgroup).toMatchObject({ created: true, added: [running.vm.pid] });
    for (const phase of ['vmLaunched', 'agentAnswered', 'agentReady', 'vmReady']) expect(running.clock.timings[phase]).toBeGreaterThan(0);
    // Concurrent callers share the one boot.
    expect(await sb.ensureReady()).toBe(running);
    await sb.destroy('test');
    expect(called).toEqual(['Check', 'DestroySandbox']);
    expect(running.active).toBe(false);
    expectReleased(sb);
    await expect(sb.ensureReady()).rejects.toMatchObject({ code: 'Unavailable' });
  });

  it('template: a clone adopts a fresh identity; a clone that fails to launch or to adopt falls back to a cold boot', async () => {
    const sources = new FakeSources(undefined, template);
    let sb = sandbox(sources);
    let running = await sb.ensureReady();
    expect(running.startPath).toBe('template');
    expect(driver.vms[0]!.spec.template).toMatchObject({ role: 'clone', memoryPath: template.memoryPath });
    expect(called).toEqual(['Check', 'AdoptIdentity']);
    expect(sources.clones).toEqual({ ok: 1, failed: 0 });
    await sb.destroy('test');
    expectReleased(sb);

    failLaunch((spec) => spec.template?.role === 'clone');
    sb = sandbox(sources);
    running = await sb.ensureReady();
    expect(running.startPath).toBe('cold');
    expect(sources.clones.failed).toBe(1);
    await sb.destroy('test');
    expectReleased(sb);

    failLaunch(() => false);
    driver.handlers.AdoptIdentity = broken('no entropy');
    const before = driver.vms.length;
    sb = sandbox(sources);
    running = await sb.ensureReady();
    expect(running.startPath).toBe('cold');
    expect(driver.vms.length - before).toBe(2);
    expect(driver.vms.at(-2)!.stopped).toBe(true);
    await sb.destroy('test');
    expectReleased(sb);
  });

  it("template: a clone's AdoptIdentity goes out once its Check has answered, with the host's time of then; a failed check is the error", async () => {
    const sources = new FakeSources(undefined, template);
    // The identity carries the host's clock: taken before the agent answered, the guest's clock would lag by the wait.
    let answeredAt = 0n;
    let sentTimeNs = 0n;
    driver.handlers.Check = async () => {
      called.push('Check');
      await new Promise((r) => setTimeout(r, 50));
      called.push('Check answered');
      answeredAt = BigInt(Date.now()) * 1_000_000n;
      return new Uint8Array();
    };
    driver.handlers.AdoptIdentity = async (payload) => {
      called.push('AdoptIdentity');
      sentTimeNs = BigInt(String(decode('tern.agent.v1.AdoptIdentityRequest', payload).realtime_ns));
      return new Uint8Array();
    };
    const sb = sandbox(sources);
    expect((await sb.ensureReady()).startPath).toBe('template');
    expect(called).toEqual(['Check', 'Check answered', 'AdoptIdentity']);
    // Both are the wall clock in whole ms.
    expect(sentTimeNs).toBeGreaterThanOrEqual(answeredAt);
    await sb.destroy('test');
    expectReleased(sb);

    // A clone whose agent fails the check is not kept: its VM stops and a cold boot follows.
    called = [];
    driver.handlers.Check = async () => {
      called.push('Check');
      // The cold boot's check passes.
      if (driver.vms.at(-1)!.spec.template?.role === 'clone') throw new Error('agent broken');
      return new Uint8Array();
    };
    driver.handlers.AdoptIdentity = async () => {
      called.push('AdoptIdentity');
      return new Uint8Array();
    };
    const before = driver.vms.length;
    const sb2 = sandbox(sources);
    expect((await sb2.ensureReady()).startPath).toBe('cold');
    expect(driver.vms.length - before).toBe(2);
    expect(driver.vms.at(-2)!.stopped).toBe(true);
    await sb2.destroy('test');
    expectReleased(sb2);
  });

  it('warm pool: the pooled VM is adopted into the pod cgroup; a failed adoption removes it and boots another', async () => {
    const dir = join(root, 'sb', 'sb1');
    let granted = pooledVm(dir);
    const cfg = config();
    cfg.pool.size = 1;
    let sb = sandbox(new FakeSources(granted), cfg);
    const running = await sb.ensureReady();
    expect(running.startPath).toBe('pool');
    expect(running.sharedDir).toBe(join(granted.dir, 'shared'));
    expect(driver.vms[0]!.how).toBe('adopt');
    expect(cgroup.added).toEqual([granted.pid]);
    expect(called).toEqual(['SetHostname']);
    expect(JSON.parse(readFileSync(join(dir, 'sandbox.json'), 'utf8'))).toMatchObject({ startPath: 'pool', pooledDir: granted.dir });
    await sb.destroy('test');
    expectReleased(sb);
    expect(existsSync(granted.dir)).toBe(false);

    granted = pooledVm(dir);
    failLaunch((_spec, how) => how === 'adopt');
    sb = sandbox(new FakeSources(granted), cfg);
    const again = await sb.ensureReady();
    expect(again.startPath).toBe('cold');
    expect(existsSync(granted.dir)).toBe(false);
    expect(driver.cleanedFromDisk).toContain(join(granted.dir, 'vm'));
    await sb.destroy('test');
    expectReleased(sb);
  });

  it('a failure at each phase of a cold boot fails the boot with its cause and leaves nothing', async () => {
    // The hypervisor does not launch.
    failLaunch(() => true, internal('qemu: no such binary'));
    let sb = sandbox();
    await expect(sb.ensureReady()).rejects.toThrow('qemu: no such binary');
    expectReleased(sb);
    expect(driver.cleanedFromDisk).toEqual([join(sb.dir, 'vm')]);

    // The agent answers with an error.
    failLaunch(() => false);
    driver.handlers.Check = broken('agent broken');
    sb = sandbox();
    await expect(sb.ensureReady()).rejects.toThrow(/guest agent check failed: .*agent broken/);
    expect(driver.vms).toHaveLength(1);
    expectReleased(sb);

    // The VM dies before its agent answers.
    driver.handlers.Check = () => new Promise<Uint8Array>(() => undefined);
    driver.beforeLaunch = async () => {
      setTimeout(() => void driver.vms.at(-1)!.crash(), 50);
    };
    sb = sandbox();
    await expect(sb.ensureReady()).rejects.toThrow(/VM exited during boot \(qemu SIGKILL\): killed/);
    expectReleased(sb);
  });

  it('destroy at each phase of a boot: the boot ends Unavailable and what it was acquiring is undone too', async () => {
    for (const phase of ['sources', 'launch', 'agent'] as const) {
      let arrived!: () => void;
      const atPhase = new Promise<void>((r) => {
        arrived = r;
      });
      let release!: () => void;
      const gate = new Promise<void>((r) => {
        release = r;
      });
      const held = async () => {
        arrived();
        await gate;
      };
      const sources = new FakeSources();
      if (phase === 'sources') {
        sources.takeFromPool = async () => {
          await held();
          return undefined;
        };
      }
      driver.beforeLaunch = phase === 'launch' ? held : async () => {};
      driver.handlers.Check = async () => {
        if (phase === 'agent') await held();
        return new Uint8Array();
      };
      cgroup = new FakeCgroup('sb1');
      const sb = sandbox(sources);
      const boot = sb.ensureReady();
      await atPhase;
      const destroyed = sb.destroy(`test at ${phase}`);
      release();
      await expect(boot, phase).rejects.toMatchObject({ code: 'Unavailable' });
      await destroyed;
      expectReleased(sb);
    }
  });

  it('a VM that exits on its own is reported once, with why, and the sandbox tears itself down', async () => {
    const sb = sandbox();
    const exits: Array<{ exit: VmExit; reason: string }> = [];
    sb.onVmExit((exit, reason) => exits.push({ exit, reason }));
    await sb.ensureReady();
    await driver.vms[0]!.crash();
    await sb.destroy('after the crash');
    expect(exits).toEqual([{ exit: { code: null, signal: 'SIGKILL', stderrTail: 'killed' }, reason: 'VM exited (qemu SIGKILL)' }]);
    expectReleased(sb);
  });
});
