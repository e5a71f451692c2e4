// The VM factory: turns a guest shape into a template (built once, then
// looked up) and builds one when it is missing: boot a VM with the template
// layout and shared file-backed RAM, wait for its agent, disconnect, pause
// and save its device state, then stop it. Guest RAM, page cache included
// (node and the agent, read from the guest image), stays in the memory file
// for clones to share; nothing is dropped before saving for that reason.
import { mkdirSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, join } from 'node:path';
import type { TernConfig } from '../../common/config';
import { internal } from '../../common/errors';
import type { Logger } from '../../common/logging';
import { agentLogKernelParams } from '../../common/log-level';
import { resolveRunAs } from '../../common/run-as';
import { TemplateRestoreError, type HypervisorDriver, type VmSpec } from '../../hypervisor/hypervisor';
import { resolveBinary } from '../../hypervisor/index';
import { AgentClient } from '../agent-client';
import { templateKey, type TemplateShape } from './key';
import { makeScratchImage } from '../scratch-disks';
import { TemplateStore, templateFiles, type Template, type TemplateRecord } from './store';

/**
 * The steps of a template build, in order: QEMU starting the VM, the guest
 * agent answering, the device state being saved, the VM stopping. A caller
 * that shows progress (`tern factory init`) is told as each one begins.
 */
export const TEMPLATE_BUILD_PHASES = ['boot', 'agent', 'save', 'stop'] as const;
export type TemplateBuildPhase = (typeof TEMPLATE_BUILD_PHASES)[number];

/** How long a shim waits for another one's template build before it boots cold. */
const BUILD_WAIT_SLACK_MS = 30_000;

/** Kernel parameter with which the guest's init lets the agent's V8 compile ([agent] jit); without it the agent runs --jitless. */
export const AGENT_JIT_KERNEL_PARAM = 'tern.agent_jit=1';

/**
 * The guest shape a config asks for. Its kernel parameters carry the agent's
 * log level (agent.log_level, nothing for the default) and agent.jit (nothing
 * for the default): a template's agent keeps what it booted with, so both are
 * part of the template key.
 */
export function templateShape(cfg: TernConfig, vcpus: number, memoryMiB: number): TemplateShape {
  const h = cfg.hypervisor;
  return {
    binary: h.binary,
    kernel: h.kernel,
    initrd: h.initrd,
    image: h.image,
    vcpus,
    memoryMiB,
    accel: h.accel,
    kernelParams: [...h.kernelParams, ...agentLogKernelParams(cfg.agent.logLevel), ...(cfg.agent.jit ? [AGENT_JIT_KERNEL_PARAM] : [])],
    hotplugSlots: h.hotplugSlots,
    tcgTbSizeMiB: h.tcgTbSizeMiB,
    tcgCpuModel: h.tcgCpuModel,
    writableSlotMiB: cfg.runtime.rootfsDeviceMiB,
    writableFsMiB: cfg.runtime.rootfsLimitMiB > 0 ? cfg.runtime.rootfsLimitMiB : cfg.runtime.rootfsDeviceMiB,
    layerSlots: { count: cfg.runtime.layerSlots, sizeMiB: cfg.runtime.layerSlotMiB },
    debugShell: cfg.agent.debugShell,
    maxMemoryMiB: h.maxMemoryMiB,
    maxVcpus: h.maxVcpus > 0 ? h.maxVcpus : cpus().length,
    runAs: resolveRunAs(h.runAs),
  };
}

/** The VmSpec fields a template and its clones share. */
export function templateVmSpec(shape: TemplateShape): Omit<VmSpec, 'id' | 'runDir'> {
  return {
    kernelPath: shape.kernel,
    initrdPath: shape.initrd,
    guestImagePath: shape.image,
    vcpus: shape.vcpus,
    memoryMiB: shape.memoryMiB,
    accel: shape.accel as VmSpec['accel'],
    kernelParams: shape.kernelParams,
    hotplugSlots: shape.hotplugSlots,
    tcgTbSizeMiB: shape.tcgTbSizeMiB,
    tcgCpuModel: shape.tcgCpuModel,
    writableSlotMiB: shape.writableSlotMiB,
    layerSlots: shape.layerSlots,
    binary: shape.binary,
    debugShell: shape.debugShell,
    maxMemoryMiB: shape.maxMemoryMiB,
    maxVcpus: shape.maxVcpus,
    runAs: shape.runAs,
  };
}

/** The template store at dir, whose dead builds' template VMs the driver stops. */
export function templateStore(dir: string, driver: HypervisorDriver, log: Logger): TemplateStore {
  return new TemplateStore(
    dir,
    log,
    (buildDir) => driver.cleanupFromDisk(join(buildDir, 'vm')),
    (shape) => templateKey(shape as TemplateShape, resolveBinary((shape as TemplateShape).binary)),
  );
}

export class VmFactory {
  readonly store: TemplateStore;

  constructor(
    private readonly cfg: TernConfig,
    private readonly driver: HypervisorDriver,
    private readonly log: Logger,
  ) {
    this.store = templateStore(cfg.factory.templateDir, driver, log);
  }

  keyOf(shape: TemplateShape): string {
    return templateKey(shape, resolveBinary(shape.binary));
  }

  /**
   * The template for this shape, built if it is missing. Throws if none can
   * be had. onPhase hears each build phase as it begins (not called when the
   * template is found, or another process builds it).
   */
  async template(shape: TemplateShape, onPhase?: (phase: TemplateBuildPhase) => void): Promise<Template> {
    const key = this.keyOf(shape);
    return this.store.ensure(
      key,
      shape.memoryMiB,
      async (buildDir) => {
        const writable = await this.build(key, shape, buildDir, onPhase ?? (() => {}));
        return { memoryMiB: shape.memoryMiB, buildMs: 0, shape, ...(writable ? { writable } : {}) };
      },
      this.cfg.agent.bootTimeoutMs + BUILD_WAIT_SLACK_MS,
    );
  }

  /**
   * Books a clone of `template` that failed to come up, for the log: a
   * restore QEMU refused removes that template at once; any other failure
   * (load, a deadline) counts towards dropping it after repeated ones.
   */
  cloneFailed(template: Template, err: unknown): { restoreRefused: boolean; templateRemoved: boolean } {
    if (err instanceof TemplateRestoreError) return { restoreRefused: true, templateRemoved: this.store.removeIfSame(template) };
    return { restoreRefused: false, templateRemoved: this.store.noteCloneFailure(template.key, (err as Error).message) };
  }

  /** Builds the template in buildDir; returns its premounted writable filesystem, if its guest mounted one. */
  private async build(key: string, shape: TemplateShape, buildDir: string, onPhase: (phase: TemplateBuildPhase) => void): Promise<TemplateRecord['writable']> {
    const f = templateFiles(buildDir);
    const runDir = join(buildDir, 'vm');
    mkdirSync(runDir);
    mkdirSync(f.shareDir);
    this.log.info({ key, vcpus: shape.vcpus, memoryMiB: shape.memoryMiB }, 'building VM template');
    // The filesystem its guest premounts (writable-premount.ts), kept with the template for clones to copy.
    const withWritable = shape.writableSlotMiB > 0 && shape.writableFsMiB > 0;
    if (withWritable) await makeScratchImage(f.writablePath, shape.writableSlotMiB, shape.writableFsMiB);
    let premounted = false;
    onPhase('boot');
    const vm = await this.driver.start({
      ...templateVmSpec(shape),
      id: `template-${key.slice(0, 12)}`,
      runDir,
      sharedDir: f.shareDir,
      template: { role: 'template', memoryPath: f.memoryPath, statePath: f.statePath },
      ...(withWritable ? { writableSlotFile: f.writablePath } : {}),
    });
    try {
      onPhase('agent');
      const agent = new AgentClient(await vm.connectAgent(), this.cfg.agent.callTimeoutMs);
      try {
        const exited = vm.waitExit().then((e) => {
          throw internal(`template VM exited during boot (qemu ${e.signal ?? `exit ${e.code}`}): ${e.stderrTail.trim()}`);
        });
        exited.catch(() => {});
        premounted = (await Promise.race([agent.check(this.cfg.agent.bootTimeoutMs), exited])).writable_premounted === true;
      } finally {
        // The guest sees end-of-file and waits for the next host connection,
        // which each clone makes to its own socket.
        agent.close();
      }
      onPhase('save');
      await vm.saveTemplate();
    } finally {
      onPhase('stop');
      await vm.stop().catch((err: Error) => this.log.warn({ key, err: err.message }, 'stopping the template VM'));
      await vm.cleanup().catch((err: Error) => this.log.warn({ key, err: err.message }, 'cleaning up the template VM'));
    }
    if (premounted) return { file: basename(f.writablePath), fsMiB: shape.writableFsMiB, bytes: shape.writableSlotMiB * 1024 * 1024 };
    // Its guest mounted nothing (an older guest image, a failure it logged): clones make their own filesystems.
    if (withWritable) {
      rmSync(f.writablePath, { force: true });
      this.log.warn({ key }, "the template's guest did not premount its writable slot: its clones mount their writable layers");
    }
    return undefined;
  }
}
