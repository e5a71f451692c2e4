// The VM template store: one directory per template key under the template
// dir (a tmpfs: a template's memory file is guest RAM), each complete or
// absent (built in a .build-* directory, then renamed into place). Builds are
// serialized by a lock file beside the store (created with O_EXCL, holding
// the owner's pid and start time, so a dead owner's lock is taken over);
// lookups take no lock. A template whose files are missing or do not match
// its record is removed and rebuilt; a key whose build failed is not retried
// for FAILED_RETRY_MS, so a broken setup cold-boots instead of rebuilding
// forever.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { join } from 'node:path';
import { failedPrecondition, deadlineExceeded } from '../../common/errors';
import type { Logger } from '../../common/logging';

export const FAILED_RETRY_MS = 10 * 60_000;
const TMPFS_MAGIC = 0x01021994;
const LOCK_POLL_MS = 100;

export interface TemplateRecord {
  version: 1;
  key: string;
  memoryMiB: number;
  stateBytes: number;
  stateSha256: string;
  createdAt: string;
  buildMs: number;
  shape: unknown;
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

export function templateFiles(dir: string): { memoryPath: string; statePath: string; recordPath: string; shareDir: string } {
  return {
    memoryPath: join(dir, 'memory'),
    statePath: join(dir, 'state'),
    recordPath: join(dir, 'template.json'),
    shareDir: join(dir, 'share'),
  };
}

function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

function procStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

const KEY_RE = /^[0-9a-f]{24}$/;

export class TemplateStore {
  readonly lockPath: string;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {
    this.lockPath = `${dir.replace(/\/+$/, '')}.lock`;
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
  private ensureTmpfs(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    if (fs.statfsSync(this.dir).type === TMPFS_MAGIC) return;
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=0700,nosuid,nodev', 'tern-templates', this.dir], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw failedPrecondition(`cannot mount a tmpfs for VM templates at ${this.dir}: ${(r.stderr || r.error?.message || '').trim()}`);
    }
    this.log.info({ dir: this.dir }, 'tmpfs mounted for VM templates');
  }

  /** Takes the store's build lock, waiting up to waitMs; a dead owner's lock is taken over. */
  private async lock(waitMs: number, stillWanted: () => boolean): Promise<(() => void) | null> {
    const deadline = Date.now() + waitMs;
    const me = JSON.stringify({ pid: process.pid, startTime: procStartTime(process.pid) });
    for (;;) {
      try {
        fs.writeFileSync(this.lockPath, me, { flag: 'wx', mode: 0o600 });
        return () => fs.rmSync(this.lockPath, { force: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let holder: { pid?: number; startTime?: string | null } = {};
      try {
        holder = JSON.parse(fs.readFileSync(this.lockPath, 'utf8')) as typeof holder;
      } catch {
        // Being written or just removed: look again.
      }
      if (typeof holder.pid === 'number' && procStartTime(holder.pid) !== (holder.startTime ?? null)) {
        this.log.warn({ holder: holder.pid }, 'template build lock held by a dead process: taking it over');
        fs.rmSync(this.lockPath, { force: true });
        continue;
      }
      if (!stillWanted()) return null;
      if (Date.now() >= deadline) throw deadlineExceeded(`VM template build lock ${this.lockPath} still held after ${waitMs} ms`);
      await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
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
    const unlock = await this.lock(waitMs, () => {
      ready = fs.existsSync(join(this.dir, key)) ? this.lookup(key, memoryMiB) : null;
      return ready === null;
    });
    if (!unlock) return ready!;
    try {
      const again = this.lookup(key, memoryMiB);
      if (again) return again;
      const failure = this.recentFailure(key);
      if (failure) throw failedPrecondition(`VM template build failed recently (${failure})`);
      this.ensureTmpfs();
      this.removeLeftovers();
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
        fs.writeFileSync(f.recordPath, JSON.stringify(record, null, 2) + '\n');
        fs.renameSync(buildDir, join(this.dir, key));
        fs.rmSync(this.failedPath(key), { force: true });
        this.log.info({ key, buildMs: record.buildMs, stateBytes: record.stateBytes }, 'VM template built');
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

  /** Build or trash directories a dead builder left (called with the lock held). */
  private removeLeftovers(): void {
    for (const name of fs.readdirSync(this.dir)) {
      if (name.startsWith('.build-') || name.startsWith('.trash-')) {
        fs.rmSync(join(this.dir, name), { recursive: true, force: true });
      }
    }
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
          used = fs.statSync(templateFiles(join(this.dir, name)).memoryPath).blocks * 512;
        } catch {
          used = undefined;
        }
        out.push(
          template
            ? { key: name, state: 'ready', detail: `built ${template.record.createdAt} in ${template.record.buildMs} ms`, memoryBytesUsed: used, record: template.record }
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

  /** Removes every template and unmounts the store's tmpfs (if it is one we mounted). */
  destroyAll(): void {
    if (!fs.existsSync(this.dir)) return;
    for (const name of fs.readdirSync(this.dir)) fs.rmSync(join(this.dir, name), { recursive: true, force: true });
    if (fs.statfsSync(this.dir).type === TMPFS_MAGIC) {
      const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
      if (mounts.split('\n').some((l) => l.split(' ')[4] === this.dir)) {
        const r = spawnSync('umount', [this.dir], { encoding: 'utf8' });
        if (r.status !== 0) throw failedPrecondition(`cannot unmount ${this.dir}: ${(r.stderr || '').trim()}`);
      }
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
