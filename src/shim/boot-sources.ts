// Where a boot may get its VM from before it launches one of its own: the
// warm pool (a running VM to adopt) and the template store (a VM image to
// clone). Each answers "none" with the reason recorded as a fallback, never
// with an error: the boot then takes the next, slower path.
import type { TernConfig } from '../common/config';
import type { HypervisorDriver } from '../hypervisor/hypervisor';
import type { Logger } from '../common/logging';
import type { StartRecorder } from './metrics-recorder';
import { poolRequest } from './pool/client';
import { parseTakeReply, type TakeGranted } from './pool/protocol';
import type { BootClock } from './running-sandbox';
import { VmFactory } from './templates/factory';
import type { TemplateShape } from './templates/key';
import type { Template } from './templates/store';

/** How long a shim waits for the warm pool to hand it a VM before it starts one. */
const POOL_TAKE_TIMEOUT_MS = 3_000;

export interface BootSources {
  /** A ready VM from the warm pool, or undefined (pool off, empty, unreachable, a pod it cannot serve). */
  takeFromPool(shape: TemplateShape, clock: BootClock): Promise<TakeGranted | undefined>;
  /** The template to clone the VM from, or undefined (disabled, or none can be had). */
  template(shape: TemplateShape, clock: BootClock): Promise<Template | undefined>;
  cloneSucceeded(template: Template): void;
  /** A clone of `template` failed: whether its restore was refused (the template is suspect) and the template removed. */
  cloneFailed(template: Template, err: unknown): { restoreRefused: boolean; templateRemoved: boolean };
}

/** The pool and templates as the config sets them up. */
export class ConfiguredSources implements BootSources {
  private factoryInstance?: VmFactory;

  constructor(
    private readonly id: string,
    private readonly owner: string,
    private readonly cfg: TernConfig,
    private readonly driver: HypervisorDriver,
    private readonly start: StartRecorder,
    private readonly log: Logger,
  ) {}

  private get factory(): VmFactory {
    this.factoryInstance ??= new VmFactory(this.cfg, this.driver, this.log);
    return this.factoryInstance;
  }

  async takeFromPool(shape: TemplateShape, clock: BootClock): Promise<TakeGranted | undefined> {
    const pool = this.cfg.pool;
    if (pool.size === 0) return undefined;
    try {
      const key = this.factory.keyOf(shape);
      const line = await poolRequest(pool.socket, { op: 'take', key, sandboxId: this.id, owner: this.owner }, POOL_TAKE_TIMEOUT_MS);
      const reply = parseTakeReply(line, pool.dir);
      if (!reply.ok) {
        this.log.info({ reason: reply.reason }, 'warm pool had no VM for this pod');
        this.start.fallback('pool', 'refused', reply.reason);
        return undefined;
      }
      clock.mark('poolTaken');
      return reply;
    } catch (err) {
      // A take that timed out may still complete: the ledger's pooled-vms step removes what this sandbox owns in the pool.
      this.log.warn({ err: (err as Error).message }, 'warm pool not reachable');
      this.start.fallback('pool', 'unreachable', (err as Error).message);
      return undefined;
    }
  }

  async template(shape: TemplateShape, clock: BootClock): Promise<Template | undefined> {
    if (!this.cfg.factory.template) return undefined;
    try {
      const template = await this.factory.template(shape);
      clock.mark('templateReady');
      return template;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'no VM template: booting cold');
      this.start.fallback('template', 'unavailable', (err as Error).message);
      return undefined;
    }
  }

  cloneSucceeded(template: Template): void {
    this.factory.store.noteCloneSuccess(template.key);
  }

  cloneFailed(template: Template, err: unknown): { restoreRefused: boolean; templateRemoved: boolean } {
    return this.factory.cloneFailed(template, err);
  }
}
