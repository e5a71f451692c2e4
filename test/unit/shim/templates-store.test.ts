// The VM template store on a real tmpfs (/dev/shm, so the store never mounts
// one): what makes a template usable, removal, the failure record, ensure()
// building once and destroyAll (its lock: templates-build-lock.test.ts).
import fs from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { silentLogger } from '../../../src/common/logging';
import {
  CLONE_FAILURES_TO_DROP,
  FAILED_RETRY_MS,
  mountSourcesAt,
  TemplateStore,
  type TemplateRecord,
  writableTemplateOf,
} from '../../../src/shim/templates/store';
import { buildFiles as fixtureBuildFiles, MiB, sha256, sizedFile, touchMemory, writeTemplate as fixtureTemplate } from './template-fixtures';
import { countingBuild, KEY, MEM, OTHER, storeOnShmEachTest } from './template-store-env';

let tmp: string;
let store: TemplateStore;
storeOnShmEachTest((st, t) => {
  store = st;
  tmp = t;
});

const buildFiles = (dir: string, memoryMiB = MEM) => fixtureBuildFiles(dir, memoryMiB);
const writeTemplate = (key = KEY, memoryMiB = MEM) => fixtureTemplate(store.dir, key, memoryMiB);

const storeEntries = () => fs.readdirSync(store.dir);

describe('check and lookup', () => {
  it('a complete template checks out and is found', () => {
    const record = writeTemplate();
    const { template, problem } = store.check(KEY, MEM);
    expect(problem).toBeUndefined();
    expect(template).toEqual({
      key: KEY,
      dir: join(store.dir, KEY),
      memoryPath: join(store.dir, KEY, 'memory'),
      statePath: join(store.dir, KEY, 'state'),
      record,
    });
    expect(store.lookup(KEY, MEM)?.record.stateSha256).toBe(record.stateSha256);
  });

  it('an absent template is reported as such and lookup() gives null', () => {
    expect(store.check(KEY, MEM)).toEqual({ problem: 'absent' });
    expect(store.lookup(KEY, MEM)).toBeNull();
  });

  const damages: Array<[string, (dir: string) => void, RegExp, number?]> = [
    ['missing template.json', (d) => fs.rmSync(join(d, 'template.json')), /^template\.json unreadable: .*ENOENT/],
    ['unparsable template.json', (d) => fs.writeFileSync(join(d, 'template.json'), '{'), /^template\.json unreadable/],
    [
      'a record naming another key',
      (d) => {
        const r = JSON.parse(fs.readFileSync(join(d, 'template.json'), 'utf8')) as TemplateRecord;
        fs.writeFileSync(join(d, 'template.json'), JSON.stringify({ ...r, key: OTHER }));
      },
      new RegExp(`^template\\.json names key ${OTHER}$`),
    ],
    ['a memory size other than asked for', () => {}, /^memory 8 MiB, want 16$/, 16],
    ['a short memory file', (d) => sizedFile(join(d, 'memory'), (MEM - 1) * MiB), new RegExp(`^memory file is ${(MEM - 1) * MiB} bytes, want ${MEM} MiB$`)],
    ['a missing memory file', (d) => fs.rmSync(join(d, 'memory')), /^file missing: .*memory/],
    ['a longer state file', (d) => fs.appendFileSync(join(d, 'state'), 'x'), /^state file is 4097 bytes, want 4096$/],
    [
      'a state file with other bytes',
      (d) => {
        const s = fs.readFileSync(join(d, 'state'));
        s[100] = s[100]! ^ 0xff;
        fs.writeFileSync(join(d, 'state'), s);
      },
      /^state file does not match its checksum$/,
    ],
  ];

  const withWritable = (d: string, bytes: number | undefined) => {
    const r = JSON.parse(fs.readFileSync(join(d, 'template.json'), 'utf8')) as TemplateRecord;
    fs.writeFileSync(join(d, 'template.json'), JSON.stringify({ ...r, writable: { file: 'writable.img', fsMiB: 1, bytes: MiB } }));
    if (bytes !== undefined) sizedFile(join(d, 'writable.img'), bytes);
  };
  damages.push(
    ['a recorded writable disk that is missing', (d) => withWritable(d, undefined), /^writable disk writable\.img is missing, want 1048576 bytes$/],
    ['a recorded writable disk of another size', (d) => withWritable(d, MiB + 512), /^writable disk writable\.img is 1049088, want 1048576 bytes$/],
  );

  it('a template with its recorded writable disk checks out, and tells whether it is still the same', async () => {
    writeTemplate();
    const dir = join(store.dir, KEY);
    withWritable(dir, MiB);
    const { template, problem } = store.check(KEY, MEM);
    expect(problem).toBeUndefined();
    expect(template?.record.writable).toEqual({ file: 'writable.img', fsMiB: 1, bytes: MiB });
    const w = writableTemplateOf(template!);
    expect(w).toMatchObject({ file: join(dir, 'writable.img'), fsMiB: 1 });
    await expect(w!.unchanged()).resolves.toBe(true);
    // Rebuilt meanwhile (another creation time), or gone: not the same template any more.
    const r = JSON.parse(fs.readFileSync(join(dir, 'template.json'), 'utf8')) as TemplateRecord;
    fs.writeFileSync(join(dir, 'template.json'), JSON.stringify({ ...r, createdAt: '2027-01-01T00:00:00.000Z' }));
    await expect(w!.unchanged()).resolves.toBe(false);
    fs.rmSync(dir, { recursive: true });
    await expect(w!.unchanged()).resolves.toBe(false);
    // A template without one has none.
    expect(writableTemplateOf({ ...template!, record: { ...template!.record, writable: undefined } })).toBeUndefined();
  });

  it.each(damages)('%s: reported with the problem, and lookup() removes it', (_what, damage, problem, askMiB) => {
    writeTemplate();
    const dir = join(store.dir, KEY);
    damage(dir);
    const want = askMiB ?? MEM;
    const r = store.check(KEY, want);
    expect(r.template).toBeUndefined();
    expect(r.problem).toMatch(problem);
    expect(store.lookup(KEY, want)).toBeNull();
    expect(fs.existsSync(dir)).toBe(false);
    expect(storeEntries()).toEqual([]);
  });

  it('rejects malformed keys before touching the file system', () => {
    for (const bad of ['../etc', 'A1B2C3D4E5F60718293A4B5C', 'abc', `${KEY}0`]) {
      expect(() => store.check(bad)).toThrow(expect.objectContaining({ code: 'FailedPrecondition' }));
      expect(() => store.remove(bad)).toThrow(TernError);
    }
  });
});

describe('remove', () => {
  it('renames the template away before deleting anything, leaving nothing behind', () => {
    writeTemplate();
    writeTemplate(OTHER);
    const dir = join(store.dir, KEY);
    const seenAtDelete: Array<{ path: string; keyDirExists: boolean; memoryInTrash: boolean }> = [];
    const realRm = fs.rmSync;
    vi.spyOn(fs, 'rmSync').mockImplementation((path, opts) => {
      const p = String(path);
      seenAtDelete.push({ path: p, keyDirExists: fs.existsSync(dir), memoryInTrash: fs.existsSync(join(p, 'memory')) });
      realRm(path, opts);
    });
    store.remove(KEY);
    expect(seenAtDelete).toHaveLength(1);
    expect(seenAtDelete[0]!.path).toMatch(new RegExp(`/\\.trash-${KEY}-`));
    expect(seenAtDelete[0]!.keyDirExists).toBe(false);
    expect(seenAtDelete[0]!.memoryInTrash).toBe(true);
    expect(storeEntries()).toEqual([OTHER]);
  });

  it('tolerates an absent template and an absent store', () => {
    expect(() => store.remove(KEY)).not.toThrow();
    fs.mkdirSync(store.dir);
    expect(() => store.remove(KEY)).not.toThrow();
    expect(storeEntries()).toEqual([]);
  });
});

describe('superseded templates', () => {
  it('a build removes the templates of the same shape under other keys, and keeps other shapes', async () => {
    const { build } = countingBuild();
    await store.ensure(OTHER, MEM, build, 5000); // shape {test: true}
    const third = 'cccccccccccccccccccccccc';
    await store.ensure(third, MEM, async (dir) => ({ ...(await build(dir)), shape: { other: true } }), 5000);
    expect(storeEntries().sort()).toEqual([third, OTHER].sort());
    await store.ensure(KEY, MEM, build, 5000); // same shape as OTHER: the files changed
    expect(storeEntries().sort()).toEqual([KEY, third].sort());
  });
});

describe('templates nothing will clone again', () => {
  it('a build also removes templates of other shapes whose key their shape no longer gives, or whose files are gone, and keeps current ones', async () => {
    const current = 'cccccccccccccccccccccccc';
    const changed = 'dddddddddddddddddddddddd';
    const gone = 'eeeeeeeeeeeeeeeeeeeeeeee';
    // What each recorded shape's key is now: 'gone' cannot be computed (its kernel was deleted).
    const keyOf = (shape: unknown): string => {
      const name = (shape as { name: string }).name;
      if (name === 'gone') throw new Error('template key: kernel /k: ENOENT');
      return name === 'changed' ? 'ffffffffffffffff00000000' : current;
    };
    store = new TemplateStore(join(tmp, 'store'), silentLogger, undefined, keyOf);
    const withShape = (shape: object) => async (dir: string) => {
      buildFiles(dir);
      return { memoryMiB: MEM, buildMs: 0, shape };
    };
    await store.ensure(current, MEM, withShape({ name: 'current' }), 5000);
    await store.ensure(changed, MEM, withShape({ name: 'changed' }), 5000);
    expect(storeEntries().sort()).toEqual([current, changed]);
    await store.ensure(gone, MEM, withShape({ name: 'gone' }), 5000);
    // The build of 'gone' removed 'changed' (its shape now gives another key) and kept 'current'.
    expect(storeEntries().sort()).toEqual([current, gone]);
    await store.ensure(KEY, MEM, withShape({ name: 'new' }), 5000);
    // Then the next build removes 'gone', whose files are gone.
    expect(storeEntries().sort()).toEqual([KEY, current].sort());
  });

  it('without keyOf, templates of other shapes stay', async () => {
    const { build } = countingBuild();
    const third = 'cccccccccccccccccccccccc';
    await store.ensure(third, MEM, async (dir) => ({ ...(await build(dir)), shape: { other: true } }), 5000);
    await store.ensure(KEY, MEM, build, 5000);
    expect(storeEntries().sort()).toEqual([KEY, third].sort());
  });
});

describe('removeIfSame', () => {
  it('removes the template a clone used, but not a newer one built since', () => {
    writeTemplate();
    const used = store.lookup(KEY, MEM)!;
    expect(used).not.toBeNull();
    const rec = JSON.parse(fs.readFileSync(join(used.dir, 'template.json'), 'utf8')) as TemplateRecord;
    fs.writeFileSync(join(used.dir, 'template.json'), JSON.stringify({ ...rec, createdAt: '2030-01-01T00:00:00.000Z' }));
    expect(store.removeIfSame(used)).toBe(false);
    expect(storeEntries()).toEqual([KEY]);
    fs.writeFileSync(join(used.dir, 'template.json'), JSON.stringify(rec));
    expect(store.removeIfSame(used)).toBe(true);
    expect(storeEntries()).toEqual([]);
    expect(store.removeIfSame(used)).toBe(false);
  });
});

describe('clones that restore but do not come up', () => {
  it('drop the template only after CLONE_FAILURES_TO_DROP in a row; a success in between resets the count', () => {
    writeTemplate();
    for (let i = 1; i < CLONE_FAILURES_TO_DROP; i++) {
      expect(store.noteCloneFailure(KEY, 'agent timeout')).toBe(false);
      expect(store.lookup(KEY, MEM)).not.toBeNull();
    }
    store.noteCloneSuccess(KEY);
    expect(storeEntries()).toEqual([KEY]);
    for (let i = 1; i < CLONE_FAILURES_TO_DROP; i++) expect(store.noteCloneFailure(KEY, 'agent timeout')).toBe(false);
    expect(store.noteCloneFailure(KEY, 'agent timeout')).toBe(true);
    expect(store.lookup(KEY, MEM)).toBeNull();
    expect(storeEntries()).toEqual([]);
  });
});

describe('build failures', () => {
  it('recentFailure reports a failure for FAILED_RETRY_MS after it, then no more', () => {
    fs.mkdirSync(store.dir);
    expect(store.recentFailure(KEY)).toBeNull();
    const before = Date.now();
    store.markFailed(KEY, 'qemu exited');
    const after = Date.now();
    expect(store.recentFailure(KEY)).toBe('qemu exited');
    expect(store.recentFailure(KEY, before + FAILED_RETRY_MS - 1)).toBe('qemu exited');
    expect(store.recentFailure(KEY, after + FAILED_RETRY_MS)).toBeNull();
    expect(store.recentFailure(OTHER)).toBeNull();
  });

  it('an unreadable failure record counts as no failure', () => {
    fs.mkdirSync(store.dir);
    fs.writeFileSync(join(store.dir, `${KEY}.failed`), 'not json');
    expect(store.recentFailure(KEY)).toBeNull();
  });
});

describe('ensure', () => {
  it('builds once, records the state checksum, and a second call does not build', async () => {
    const { calls, build } = countingBuild();
    const t = await store.ensure(KEY, MEM, build, 5000);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toBe(join(store.dir, `.build-${KEY}-${process.pid}`));
    expect(t.dir).toBe(join(store.dir, KEY));
    expect(t.record).toMatchObject({ version: 1, key: KEY, memoryMiB: MEM, stateBytes: 4096, shape: { test: true } });
    expect(t.record.stateSha256).toBe(sha256(fs.readFileSync(t.statePath)));
    expect(t.record.buildMs).toBeGreaterThanOrEqual(0);
    expect(storeEntries()).toEqual([KEY]);
    expect(fs.existsSync(store.lockPath)).toBe(false);

    const again = await store.ensure(KEY, MEM, build, 5000);
    expect(calls).toHaveLength(1);
    expect(again.record).toEqual(t.record);
  });

  it('a build that throws leaves no build directory and blocks retries for a while', async () => {
    const bad = countingBuild({ fail: 'guest agent never answered' });
    await expect(store.ensure(KEY, MEM, bad.build, 5000)).rejects.toThrow('guest agent never answered');
    expect(bad.calls).toHaveLength(1);
    expect(storeEntries()).toEqual([`${KEY}.failed`]);
    expect(store.recentFailure(KEY)).toBe('guest agent never answered');
    expect(fs.existsSync(store.lockPath)).toBe(false);

    const good = countingBuild();
    const err = await store.ensure(KEY, MEM, good.build, 5000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('FailedPrecondition');
    expect((err as Error).message).toMatch(/build failed recently \(guest agent never answered\)/);
    expect(good.calls).toHaveLength(0);
    expect(fs.existsSync(store.lockPath)).toBe(false);
  });

  it('a successful build clears an expired failure record', async () => {
    fs.mkdirSync(store.dir);
    fs.writeFileSync(join(store.dir, `${KEY}.failed`), JSON.stringify({ at: Date.now() - FAILED_RETRY_MS - 1, error: 'old' }));
    const { calls, build } = countingBuild();
    await store.ensure(KEY, MEM, build, 5000);
    expect(calls).toHaveLength(1);
    expect(storeEntries()).toEqual([KEY]);
  });

  it('rebuilds a template that does not check out', async () => {
    writeTemplate();
    fs.appendFileSync(join(store.dir, KEY, 'state'), 'x');
    const { calls, build } = countingBuild();
    const t = await store.ensure(KEY, MEM, build, 5000);
    expect(calls).toHaveLength(1);
    expect(t.record.createdAt).not.toBe('2026-01-02T03:04:05.000Z');
  });

  it('creates the store and its parent directories when they do not exist', async () => {
    const deep = new TemplateStore(join(tmp, 'a', 'b', 'store'), silentLogger);
    const { calls, build } = countingBuild();
    const t = await deep.ensure(KEY, MEM, build, 5000);
    expect(calls).toHaveLength(1);
    expect(t.dir).toBe(join(tmp, 'a', 'b', 'store', KEY));
    expect(fs.readdirSync(join(tmp, 'a', 'b'))).toEqual(['store']);
  });

  it('clears build and trash directories a dead builder left, and expired failure records', async () => {
    fs.mkdirSync(join(store.dir, `.build-${KEY}-1`), { recursive: true });
    fs.mkdirSync(join(store.dir, `.trash-${OTHER}-1-2`));
    fs.writeFileSync(join(store.dir, `${OTHER}.failed`), JSON.stringify({ at: Date.now() - FAILED_RETRY_MS - 1, error: 'old' }));
    const third = 'fedcba9876543210fedcba98';
    fs.writeFileSync(join(store.dir, `${third}.failed`), JSON.stringify({ at: Date.now(), error: 'recent' }));
    await store.ensure(KEY, MEM, countingBuild().build, 5000);
    expect(storeEntries().sort()).toEqual([KEY, `${third}.failed`].sort());
  });

  it('two concurrent calls for one key build once and get the same template', async () => {
    const { calls, build } = countingBuild({ delayMs: 300 });
    const [a, b] = await Promise.all([store.ensure(KEY, MEM, build, 5000), store.ensure(KEY, MEM, build, 5000)]);
    expect(calls).toHaveLength(1);
    expect(a.dir).toBe(b.dir);
    expect(a.record).toEqual(b.record);
    expect(fs.existsSync(store.lockPath)).toBe(false);
  });
});

describe('status', () => {
  it('lists ready, invalid, failed and building entries, ignoring anything else', () => {
    const record = writeTemplate();
    // 1 MiB of the 8 MiB memory file written: the rest is a hole.
    touchMemory(store.dir, KEY, MiB);
    writeTemplate(OTHER);
    fs.rmSync(join(store.dir, OTHER, 'state'));
    store.markFailed('0123456789abcdef01234567', 'qemu: cannot set up guest memory');
    fs.mkdirSync(join(store.dir, '.build-fedcba9876543210fedcba98-4242'));
    fs.mkdirSync(join(store.dir, '.trash-x'));
    fs.writeFileSync(join(store.dir, 'README'), 'x');

    const list = store.status();
    expect(list.map((s) => [s.key, s.state])).toEqual([
      ['fedcba9876543210fedcba98', 'building'],
      ['0123456789abcdef01234567', 'failed'],
      [KEY, 'ready'],
      [OTHER, 'invalid'],
    ]);
    const ready = list.find((s) => s.key === KEY)!;
    expect(ready.detail).toBe(`built ${record.createdAt} in ${record.buildMs} ms`);
    expect(ready.record).toEqual(record);
    expect(ready.memoryBytesUsed).toBeGreaterThanOrEqual(MiB);
    expect(ready.memoryBytesUsed).toBeLessThan(2 * MiB);
    expect(list.find((s) => s.key === OTHER)!.detail).toMatch(/^file missing: .*state/);
    expect(list.find((s) => s.state === 'failed')!.detail).toBe('qemu: cannot set up guest memory');
    // status() only reports: nothing is removed.
    expect(fs.existsSync(join(store.dir, OTHER))).toBe(true);
  });

  it('is empty when the store does not exist', () => {
    expect(store.status()).toEqual([]);
  });
});

describe('destroyAll', () => {
  it('removes every template and the store directory, and tolerates an absent store', async () => {
    writeTemplate();
    writeTemplate(OTHER);
    store.markFailed(KEY, 'x');
    await store.destroyAll();
    expect(fs.existsSync(store.dir)).toBe(false);
    expect(fs.readdirSync(tmp)).toEqual([]);
    await expect(store.destroyAll()).resolves.toBeUndefined();
  });

  it('waits for a build in progress, then removes what it built', async () => {
    let finish!: () => void;
    const gate = new Promise<void>((r) => (finish = r));
    const building = store.ensure(
      KEY,
      MEM,
      async (dir) => {
        await gate;
        buildFiles(dir);
        return { memoryMiB: MEM, buildMs: 0, shape: {} };
      },
      5000,
    );
    await new Promise((r) => setTimeout(r, 50));
    let destroyed = false;
    const destroying = store.destroyAll(5000).then(() => (destroyed = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(destroyed).toBe(false);
    expect(fs.existsSync(join(store.dir, `.build-${KEY}-${process.pid}`))).toBe(true);
    finish();
    const t = await building;
    expect(t.key).toBe(KEY);
    await destroying;
    expect(fs.existsSync(store.dir)).toBe(false);
    expect(fs.existsSync(store.lockPath)).toBe(false);
  });

  it('finds what is mounted exactly at a directory (destroyAll unmounts only its own tmpfs)', () => {
    expect(mountSourcesAt('/proc')).toContain('proc');
    fs.mkdirSync(store.dir);
    expect(mountSourcesAt(store.dir)).toEqual([]);
  });

  it('gives up when the lock stays held, leaving the templates in place', async () => {
    writeTemplate();
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    fs.writeFileSync(store.lockPath, JSON.stringify({ pid: process.pid, startTime }));
    await expect(store.destroyAll(300)).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    expect(store.check(KEY, MEM).template).toBeDefined();
  });
});
