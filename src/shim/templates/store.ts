// The VM template store: one directory per template key under the template
// dir (a tmpfs: a template's memory file is guest RAM), each complete or
// absent (built in a .build-* directory, then renamed into place). Builds are
// serialized by a lock file beside the store (build-lock.ts); lookups take no
// lock, destroying the store takes it. A template whose
// files are missing or do not match its record is removed and rebuilt; a key
// whose build failed is not retried for FAILED_RETRY_MS, so a broken setup
// cold-boots instead of rebuilding forever.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { join } from 'node:path';
import { type TernError, failedPrecondition } from '../../common/errors';
import { runCommand } from '../../common/run-command';
import type { Logger } from '../../common/logging';
import type { WritableTemplate } from '../scratch-disks';
import { BuildLock } from './build-lock';

export const FAILED_RETRY_MS = 10 * 60_000;
/** Clones that restored but whose guest then failed, in a row, before the template is dropped. */
export const CLONE_FAILURES_TO_DROP = 3;
const TMPFS_MAGIC = 0x01021994;
/** The source name of the tmpfs a store mounts (so destroyAll unmounts only its own). */
const MOUNT_SOURCE = 'tern-templates';
/** Deadline of the store's mount and umount (they run without holding the event loop). */
const MOUNT_TIMEOUT_MS = 10_000;
/** How long destroyAll waits for a build in progress. */
export const DESTROY_LOCK_WAIT_MS = 120_000;

export interface TemplateRecord {
  version: 1;
  key: string;
  memoryMiB: number;
  stateBytes: number;
  stateSha256: string;
  createdAt: string;
  buildMs: number;
  shape: unknown;
  /**
   * The writable slot's filesystem its guest holds mounted (writable-premount.ts):
   * the disk's file in the template's directory, its filesystem's size and
   * the file's. A clone's container with that limit gets a copy of it.
   */
  writable?: { file: string; fsMiB: number; bytes: number };
}

export interface Template {
  key: string;
  dir: string;
  memoryPath: string;
  statePath: string;
  record: TemplateRecord;
}

export interface TemplateStatus {
  key: string;
  state: 'ready' | 'invalid' | 'failed' | 'building';
  detail: string;
  memoryBytesUsed?: number;
  record?: TemplateRecord;
}

/** The template's premounted writable disk, for its clones' containers to copy (scratch-disks.ts); undefined without one. */
export function writableTemplateOf(t: Template): WritableTemplate | undefined {
  const w = t.record.writable;
  if (!w) return undefined;
  const { recordPath } = templateFiles(t.dir);
  // Still the same template: its record names the same creation time (a rebuild renames a new directory into place).
  const unchanged = () =>
    fs.promises.readFile(recordPath, 'utf8').then(
      (text) => (JSON.parse(text) as TemplateRecord).createdAt === t.record.createdAt,
      () => false,
    );
  return { file: join(t.dir, w.file), fsMiB: w.fsMiB, unchanged };
}

export function templateFiles(dir: string): { memoryPath: string; statePath: string; recordPath: string; shareDir: string; writablePath: string } {
  return {
    memoryPath: join(dir, 'memory'),
    statePath: join(dir, 'state'),
    recordPath: join(dir, 'template.json'),
    shareDir: join(dir, 'share'),
    writablePath: join(dir, 'writable.img'),
  };
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

const KEY_RE = /^[0-9a-f]{24}$/;

/** Decodes the octal escapes (\040 for a space) of a /proc/self/mountinfo path. */
function mountinfoPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The sources of the filesystems mounted exactly at dir. */
export function mountSourcesAt(dir: string): string[] {
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [left, right] = line.split(' - ');
    const point = left?.split(' ')[4];
    if (right === undefined || point === undefined || mountinfoPath(point) !== dir) continue;
    out.push(right.split(' ')[1] ?? '');
  }
  return out;
}

export class TemplateStore {
  readonly lockPath: string;
  private readonly buildLock: BuildLock;

  /**
   * `reapBuild` stops what a dead builder left running in a build directory
   * (its template VM) before the directory is removed. `keyOf` computes the
   * key a recorded shape would have now (throwing when its files are gone):
   * a template whose key no longer matches can never be cloned again.
   */
  constructor(
    readonly dir: string,
    private readonly log: Logger,
    private readonly reapBuild?: (buildDir: string) => Promise<void>,
    private readonly keyOf?: (shape: unknown) => string,
  ) {
    this.lockPath = `${dir.replace(/\/+$/, '')}.lock`;
    this.buildLock = new BuildLock(this.lockPath, log);
  }

  private keyDir(key: string): string {
    if (!KEY_RE.test(key)) throw failedPrecondition(`template key ${JSON.stringify(key)} is malformed`);
    return join(this.dir, key);
  }

  /** Checks a template's files against its record; the reason it is unusable, or null. */
  check(key: string, memoryMiB?: number): { template?: Template; problem?: string } {
    const dir = this.keyDir(key);
    const f = templateFiles(dir);
    if (!fs.existsSync(dir)) return { problem: 'absent' };
    let record: TemplateRecord;
    try {
      record = JSON.parse(fs.readFileSync(f.recordPath, 'utf8')) as TemplateRecord;
    } catch (err) {
      return { problem: `template.json unreadable: ${(err as Error).message}` };
    }
    if (record.key !== key) return { problem: `template.json names key ${record.key}` };
    if (memoryMiB !== undefined && record.memoryMiB !== memoryMiB) return { problem: `memory ${record.memoryMiB} MiB, want ${memoryMiB}` };
    let memSize: number;
    let stateSize: number;
    try {
      memSize = fs.statSync(f.memoryPath).size;
      stateSize = fs.statSync(f.statePath).size;
    } catch (err) {
      return { problem: `file missing: ${(err as Error).message}` };
    }
    if (memSize !== record.memoryMiB * 1024 * 1024) return { problem: `memory file is ${memSize} bytes, want ${record.memoryMiB} MiB` };
    if (stateSize !== record.stateBytes) return { problem: `state file is ${stateSize} bytes, want ${record.stateBytes}` };
    if (record.writable) {
      const file = join(dir, record.writable.file);
      const size = fs.statSync(file, { throwIfNoEntry: false })?.size;
      if (size !== record.writable.bytes)
        return { problem: `writable disk ${record.writable.file} is ${size ?? 'missing'}, want ${record.writable.bytes} bytes` };
    }
    // The device state is small (hundreds of KB): hashing it costs about a millisecond.
    if (sha256File(f.statePath) !== record.stateSha256) return { problem: 'state file does not match its checksum' };
    return { template: { key, dir, memoryPath: f.memoryPath, statePath: f.statePath, record } };
  }

  /** A usable template for the key, or null; an invalid one is removed (and so rebuilt). */
  lookup(key: string, memoryMiB: number): Template | null {
    const { template, problem } = this.check(key, memoryMiB);
    if (template) return template;
    if (problem !== 'absent') {
      this.log.warn({ key, problem }, 'VM template invalid: removing it');
      this.remove(key);
    }
    return null;
  }

  /**
   * Removes the template only if it is still the one the caller used (same
   * creation time): a clone that failed on an old template must not remove
   * a newer one built meanwhile. Returns true if it removed it.
   */
  removeIfSame(t: Template): boolean {
    try {
      const now = JSON.parse(fs.readFileSync(templateFiles(t.dir).recordPath, 'utf8')) as TemplateRecord;
      if (now.createdAt !== t.record.createdAt) return false;
    } catch {
      return false;
    }
    this.remove(t.key);
    return true;
  }

  /** Removes a template (atomically: renamed away first, so nobody sees half of it). */
  remove(key: string): void {
    const dir = this.keyDir(key);
    const trash = join(this.dir, `.trash-${key}-${process.pid}-${Date.now()}`);
    try {
      fs.renameSync(dir, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    // Clones still running keep their mapping of the unlinked memory file.
    fs.rmSync(trash, { recursive: true, force: true });
  }

  private suspectPath(key: string): string {
    return join(this.dir, `${key}.suspect`);
  }

  /**
   * A clone restored but its guest then failed (no agent, identity refused):
   * maybe load, maybe the template. After CLONE_FAILURES_TO_DROP such failures
   * in a row the template is removed (rebuilt on next use). Returns true if
   * it was removed.
   */
  noteCloneFailure(key: string, error: string): boolean {
    let count = 0;
    try {
      count = (JSON.parse(fs.readFileSync(this.suspectPath(key), 'utf8')) as { count?: number }).count ?? 0;
    } catch {
      count = 0;
    }
    count++;
    if (count >= CLONE_FAILURES_TO_DROP) {
      this.log.warn({ key, count, error }, 'VM template failed its clones repeatedly: removing it');
      fs.rmSync(this.suspectPath(key), { force: true });
      this.remove(key);
      return true;
    }
    try {
      fs.writeFileSync(this.suspectPath(key), JSON.stringify({ count, at: Date.now(), error }));
    } catch (err) {
      this.log.warn({ key, err: (err as Error).message }, 'cannot record the clone failure');
    }
    return false;
  }

  /** A clone of this template came up: it is not suspect (any more). */
  noteCloneSuccess(key: string): void {
    const p = this.suspectPath(key);
    if (fs.existsSync(p)) fs.rmSync(p, { force: true });
  }

  private failedPath(key: string): string {
    return join(this.dir, `${key}.failed`);
  }

  /** Why the key's last build failed, if that was less than FAILED_RETRY_MS ago. */
  recentFailure(key: string, now = Date.now()): string | null {
    try {
      const f = JSON.parse(fs.readFileSync(this.failedPath(key), 'utf8')) as { at: number; error: string };
      return now - f.at < FAILED_RETRY_MS ? f.error : null;
    } catch {
      return null;
    }
  }

  markFailed(key: string, error: string): void {
    try {
      fs.writeFileSync(this.failedPath(key), JSON.stringify({ at: Date.now(), error }));
    } catch (err) {
      this.log.warn({ key, err: (err as Error).message }, 'cannot record the template build failure');
    }
  }

  /** Makes the store directory exist on a tmpfs (mounting one if needed). Call with the lock held. */
  private async ensureTmpfs(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (fs.statfsSync(this.dir).type === TMPFS_MAGIC) return;
    await runCommand('mount', ['-t', 'tmpfs', '-o', 'mode=0700,nosuid,nodev', MOUNT_SOURCE, this.dir], { timeoutMs: MOUNT_TIMEOUT_MS }).catch(
      (err: TernError) => {
        if (err.code === 'DeadlineExceeded') throw err;
        throw failedPrecondition(`cannot mount a tmpfs for VM templates at ${this.dir}: ${err.message}`);
      },
    );
    this.log.info({ dir: this.dir }, 'tmpfs mounted for VM templates');
  }

  /**
   * The template for a key: looked up, or built once by `build` (into the
   * directory it is given) while other callers wait for it.
   */
  async ensure(
    key: string,
    memoryMiB: number,
    build: (buildDir: string) => Promise<Omit<TemplateRecord, 'version' | 'key' | 'stateBytes' | 'stateSha256' | 'createdAt'>>,
    waitMs: number,
  ): Promise<Template> {
    const found = this.lookup(key, memoryMiB);
    if (found) return found;
    let ready: Template | null = null;
    const unlock = await this.buildLock.acquire(waitMs, () => {
      ready = fs.existsSync(join(this.dir, key)) ? this.lookup(key, memoryMiB) : null;
      return ready === null;
    });
    if (!unlock) return ready!;
    try {
      const again = this.lookup(key, memoryMiB);
      if (again) return again;
      const failure = this.recentFailure(key);
      if (failure) throw failedPrecondition(`VM template build failed recently (${failure})`);
      await this.ensureTmpfs();
      await this.removeLeftovers();
      const buildDir = join(this.dir, `.build-${key}-${process.pid}`);
      fs.mkdirSync(buildDir, { mode: 0o700 });
      try {
        const t0 = performance.now();
        const partial = await build(buildDir);
        const f = templateFiles(buildDir);
        const record: TemplateRecord = {
          version: 1,
          key,
          stateBytes: fs.statSync(f.statePath).size,
          stateSha256: sha256File(f.statePath),
          createdAt: new Date().toISOString(),
          ...partial,
          memoryMiB,
          buildMs: Math.round(performance.now() - t0),
        };
        fs.writeFileSync(f.recordPath, `${JSON.stringify(record, null, 2)}\n`);
        fs.renameSync(buildDir, join(this.dir, key));
        fs.rmSync(this.failedPath(key), { force: true });
        this.log.info({ key, buildMs: record.buildMs, stateBytes: record.stateBytes }, 'VM template built');
        this.removeSuperseded(key, record.shape);
      } catch (err) {
        fs.rmSync(buildDir, { recursive: true, force: true });
        this.markFailed(key, (err as Error).message);
        throw err;
      }
      const made = this.lookup(key, memoryMiB);
      if (!made) throw failedPrecondition(`VM template ${key} was built but does not check out`);
      return made;
    } finally {
      unlock();
    }
  }

  /**
   * Templates nothing will clone again give their memory back when a new one
   * is built: those of the same configured shape under another key (built
   * from files that have changed since: a new guest image, kernel or QEMU),
   * and, with `keyOf`, those of any shape whose key is no longer what their
   * shape gives (their files changed or are gone, or they come from an
   * earlier layout), e.g. each kernel-parameter variant built before a new
   * guest image. Templates of other shapes that are still current stay.
   * Clones still running keep their mappings of the unlinked files.
   */
  private removeSuperseded(key: string, shape: unknown): void {
    const want = JSON.stringify(shape);
    for (const name of fs.readdirSync(this.dir)) {
      if (name === key || !KEY_RE.test(name)) continue;
      let why: string | undefined;
      try {
        const rec = JSON.parse(fs.readFileSync(templateFiles(join(this.dir, name)).recordPath, 'utf8')) as TemplateRecord;
        if (JSON.stringify(rec.shape) === want) why = 'superseded by a new build of the same shape';
        else why = this.staleReason(name, rec.shape);
      } catch {
        continue;
      }
      if (why === undefined) continue;
      this.log.info({ key: name, by: key, why }, 'removing a VM template nothing will clone again');
      this.remove(name);
    }
  }

  /** Why the template `name` of `shape` can no longer be cloned, or undefined if it can (or there is no keyOf to tell). */
  private staleReason(name: string, shape: unknown): string | undefined {
    if (!this.keyOf) return undefined;
    let now: string;
    try {
      now = this.keyOf(shape);
    } catch (err) {
      return `its files are gone (${(err as Error).message})`;
    }
    return now === name ? undefined : `its shape now gives key ${now}`;
  }

  /** Build or trash directories a dead builder left, and failure markers past their retry time (called with the lock held). */
  private async removeLeftovers(): Promise<void> {
    for (const name of fs.readdirSync(this.dir)) {
      if (name.startsWith('.build-')) await this.removeBuild(name);
      else if (name.startsWith('.trash-')) fs.rmSync(join(this.dir, name), { recursive: true, force: true });
      else if (name.endsWith('.failed') && this.recentFailure(name.slice(0, -'.failed'.length)) === null) fs.rmSync(join(this.dir, name), { force: true });
    }
  }

  /** Stops what a build directory's builder left running (reapBuild), then removes the directory. */
  private async removeBuild(name: string): Promise<void> {
    const dir = join(this.dir, name);
    await this.reapBuild?.(dir).catch((err: Error) => this.log.warn({ dir: name, err: err.message }, 'stopping a dead template build'));
    fs.rmSync(dir, { recursive: true, force: true });
  }

  /**
   * After the shim `pid` died (containerd's delete): its build, if it was
   * building, is stopped and removed, and its build lock released.
   */
  async reapBuildsOf(pid: number): Promise<void> {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (!/^\.build-[0-9a-f]{24}-\d+$/.test(name) || !name.endsWith(`-${pid}`)) continue;
      await this.removeBuild(name);
      this.log.warn({ dir: name }, 'removed the template build of a dead shim');
    }
    this.buildLock.removeIfStale();
  }

  /** Every key present in the store, with its state (for `tern factory status`). */
  status(): TemplateStatus[] {
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: TemplateStatus[] = [];
    for (const name of names.sort()) {
      if (KEY_RE.test(name)) {
        const { template, problem } = this.check(name);
        let used: number | undefined;
        try {
          // The memory file, and the premounted writable disk's few MB (both on the tmpfs).
          const f = templateFiles(join(this.dir, name));
          used = fs.statSync(f.memoryPath).blocks * 512 + (fs.statSync(f.writablePath, { throwIfNoEntry: false })?.blocks ?? 0) * 512;
        } catch {
          used = undefined;
        }
        out.push(
          template
            ? {
                key: name,
                state: 'ready',
                detail: `built ${template.record.createdAt} in ${template.record.buildMs} ms`,
                memoryBytesUsed: used,
                record: template.record,
              }
            : { key: name, state: 'invalid', detail: problem ?? 'unknown' },
        );
      } else if (name.endsWith('.failed')) {
        const key = name.slice(0, -'.failed'.length);
        out.push({ key, state: 'failed', detail: this.recentFailure(key, 0) ?? 'unreadable' });
      } else if (name.startsWith('.build-')) {
        out.push({ key: name.slice('.build-'.length, '.build-'.length + 24), state: 'building', detail: name });
      }
    }
    return out;
  }

  /**
   * Removes every template and unmounts the store's tmpfs if this store
   * mounted it (a tmpfs mounted there by someone else is left, emptied).
   * Takes the build lock first, waiting up to waitMs, so a template being
   * built is never pulled from under its builder.
   */
  async destroyAll(waitMs = DESTROY_LOCK_WAIT_MS): Promise<void> {
    if (!fs.existsSync(this.dir)) return;
    const unlock = (await this.buildLock.acquire(waitMs, () => true))!;
    try {
      if (!fs.existsSync(this.dir)) return;
      for (const name of fs.readdirSync(this.dir)) fs.rmSync(join(this.dir, name), { recursive: true, force: true });
      const sources = mountSourcesAt(fs.realpathSync(this.dir));
      if (sources.includes(MOUNT_SOURCE)) {
        await runCommand('umount', [this.dir], { timeoutMs: MOUNT_TIMEOUT_MS }).catch((err: TernError) => {
          if (err.code === 'DeadlineExceeded') throw err;
          throw failedPrecondition(`cannot unmount ${this.dir}: ${err.message}`);
        });
      } else if (sources.length > 0) {
        return;
      }
      fs.rmSync(this.dir, { recursive: true, force: true });
    } finally {
      unlock();
    }
  }
}
