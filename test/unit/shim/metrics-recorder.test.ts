// A sandbox's start is recorded as its fallbacks, then one outcome: a start
// with its path and phase times, or a failure with the phase and error code.
// Written through a real StartEventLog and read back from the file.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deadlineExceeded } from '../../../src/common/errors';
import { parseEvent, StartEventLog, type StartEvent } from '../../../src/shim/metrics-events';
import { StartRecorder } from '../../../src/shim/metrics-recorder';

let dir: string;
let log: StartEventLog;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-recorder-'));
  log = new StartEventLog(join(dir, 'events.jsonl'), 1 << 20);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const recorded = (): StartEvent[] =>
  readFileSync(log.path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => parseEvent(l)!);

describe('StartRecorder', () => {
  it('records fallbacks, then the start with its path and phases (ms since the boot began)', () => {
    const r = new StartRecorder('k8s.io', 'pod-1', (e) => log.append(e));
    r.fallback('pool', 'refused', 'no ready VM in the pool (0 starting)');
    r.fallback('template', 'clone_failed', 'guest agent did not answer');
    r.phase('vm_ready', 14_200.4);
    r.phase('container_created', 14_900);
    r.phase('container_created', 99_999); // a later container: the first note counts
    r.phase('process_started', 15_001);
    expect(r.settled).toBe(false);
    r.started('cold');
    expect(r.settled).toBe(true);
    r.started('cold');
    r.failed('process_started', new Error('late'));
    r.fallback('pool', 'unreachable', 'ignored after the outcome');
    const events = recorded();
    expect(events.map((e) => e.kind)).toEqual(['fallback', 'fallback', 'start']);
    expect(events[0]).toMatchObject({ namespace: 'k8s.io', sandbox: 'pod-1', from: 'pool', reason: 'refused' });
    expect(events[2]).toMatchObject({ path: 'cold', phasesMs: { vm_ready: 14_200, container_created: 14_900, process_started: 15_001 } });
  });

  it('records one failure with the error code as its reason (Unknown for untyped errors)', () => {
    const r = new StartRecorder('default', 'a', (e) => log.append(e));
    r.failed('vm_ready', deadlineExceeded('guest agent did not answer within 90000 ms'));
    r.failed('container_created', new Error('second'));
    const r2 = new StartRecorder('default', 'b', (e) => log.append(e));
    r2.phase('vm_ready', 10);
    r2.failed('container_created', new TypeError('boom'));
    r2.started('pool');
    expect(recorded()).toMatchObject([
      { kind: 'failure', sandbox: 'a', phase: 'vm_ready', reason: 'DeadlineExceeded', detail: 'guest agent did not answer within 90000 ms' },
      { kind: 'failure', sandbox: 'b', phase: 'container_created', reason: 'Unknown', detail: 'boom' },
    ]);
  });
});
