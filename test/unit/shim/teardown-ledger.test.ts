import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { legacySteps } from '../../../src/shim/delete';
import { ledgerPath, type LedgerStep, parseLedger, readLedger, TeardownLedger, type Undoers, undoSteps } from '../../../src/shim/teardown-ledger';

const net = { netnsPath: '/run/netns/cni-1', interfaces: [], routes: [] };
const STEPS: LedgerStep[] = [
  { kind: 'template-builds', templateDir: '/run/tern/templates', shimPid: 42 },
  { kind: 'pooled-vms', poolDir: '/run/tern/pool' },
  { kind: 'host-cgroup', name: 'abc' },
  { kind: 'pod-network', network: net },
  { kind: 'vm', runDir: '/run/tern/sb/abc/vm' },
];

/** Fake undoers that note what they undo; `failing` kinds throw. */
function recorder(failing: string[] = []): { undoers: Undoers; done: string[] } {
  const done: string[] = [];
  const note = (what: string) => async () => {
    done.push(what);
    if (failing.includes(what)) throw new Error(`${what} broke`);
  };
  return {
    done,
    undoers: {
      'layer-pins': note('layer-pins'),
      'scratch-disks': note('scratch-disks'),
      'template-builds': note('template-builds'),
      'pooled-vms': note('pooled-vms'),
      'host-cgroup': note('host-cgroup'),
      'shared-dir': note('shared-dir'),
      'pod-network': note('pod-network'),
      vm: note('vm'),
    },
  };
}

describe('teardown ledger', () => {
  let dir: string;
  const errors: Array<{ step: string }> = [];
  const log = { error: (o: object) => errors.push(o as { step: string }) };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tern-ledger-'));
    errors.length = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('records each step as one line on disk, read back in order', () => {
    const ledger = new TeardownLedger(dir);
    for (const s of STEPS) ledger.record(s);
    expect(readFileSync(ledgerPath(dir), 'utf8').trim().split('\n')).toHaveLength(5);
    expect(readLedger(dir)).toEqual(STEPS);
    expect(ledger.recorded).toEqual(STEPS);
  });

  it('skips a torn last line and unknown kinds (a crash mid-write, a newer shim)', () => {
    const ledger = new TeardownLedger(dir);
    ledger.record(STEPS[2]!);
    appendFileSync(ledgerPath(dir), '{"kind":"future-thing","x":1}\n{"kind":"vm","run');
    expect(readLedger(dir)).toEqual([STEPS[2]]);
    expect(parseLedger('')).toEqual([]);
    expect(readLedger(join(dir, 'missing'))).toEqual([]);
  });

  it('undoes newest first; a failing step is logged and the rest still run', async () => {
    const { undoers, done } = recorder(['pod-network']);
    await undoSteps(STEPS, undoers, log);
    expect(done).toEqual(['vm', 'pod-network', 'host-cgroup', 'pooled-vms', 'template-builds']);
    expect(errors).toEqual([{ step: 'pod-network', err: 'pod-network broke' }]);
  });

  it('a failed boot path undoes only what it recorded; destroy then undoes the rest, once each', async () => {
    const ledger = new TeardownLedger(dir);
    ledger.record(STEPS[2]!);
    const mark = ledger.mark();
    ledger.record(STEPS[3]!);
    ledger.record(STEPS[4]!);
    const first = recorder();
    await ledger.undoSince(mark, first.undoers, log);
    expect(first.done).toEqual(['vm', 'pod-network']);
    const rest = recorder();
    await ledger.undoAll(rest.undoers, log);
    expect(rest.done).toEqual(['host-cgroup']);
    expect(ledger.recorded).toEqual([]);
  });

  it('once closed (destroy began) nothing more is recorded: the acquisition fails Unavailable, naming the step', async () => {
    const ledger = new TeardownLedger(dir);
    ledger.record(STEPS[2]!);
    ledger.close();
    expect(() => ledger.record(STEPS[4]!)).toThrow(expect.objectContaining({ code: 'Unavailable', message: expect.stringContaining('not acquiring vm') }));
    expect(ledger.closed).toBe(true);
    const all = recorder();
    await ledger.undoAll(all.undoers, log);
    expect(all.done).toEqual(['host-cgroup']);
    expect(readLedger(dir)).toEqual([STEPS[2]]);
  });

  it('a step that cannot be written fails the acquisition, naming the file', () => {
    const ledger = new TeardownLedger(join(dir, 'gone'));
    let err: unknown;
    try {
      ledger.record(STEPS[4]!);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TernError);
    expect((err as Error).message).toContain(join(dir, 'gone', 'ledger.jsonl'));
    expect(ledger.recorded).toEqual([]);
  });

  it('a sandbox directory from before the ledger gives the same steps from sandbox.json and network.json', () => {
    writeFileSync(join(dir, 'sandbox.json'), JSON.stringify({ templateDir: '/t', shimPid: 7, poolDir: '/p', vmDir: '/p/x/vm' }));
    writeFileSync(join(dir, 'network.json'), JSON.stringify(net));
    expect(legacySteps(dir, '/default-pool')).toEqual([
      { kind: 'template-builds', templateDir: '/t', shimPid: 7 },
      { kind: 'pooled-vms', poolDir: '/p' },
      { kind: 'host-cgroup', name: dir.split('/').pop() },
      { kind: 'pod-network', network: net },
      { kind: 'vm', runDir: '/p/x/vm' },
    ]);
    rmSync(join(dir, 'network.json'));
    writeFileSync(join(dir, 'sandbox.json'), '{}');
    expect(legacySteps(dir, '/default-pool').map((s) => s.kind)).toEqual(['pooled-vms', 'host-cgroup', 'vm']);
  });
});
