// EventPublisher against a real ttrpc server standing in for containerd:
// events are forwarded in order; when containerd never answers, close() ends
// at its deadline, logs what was not sent, and leaves no connection behind
// (nor a retry that would open a new one).
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TtrpcServer, type CallContext } from '../../../src/ttrpc/server';
import type { Logger } from '../../../src/common/logging';
import { silentLogger } from '../../../src/common/logging';
import { EventPublisher } from '../../../src/shim/events';

const SERVICE = 'containerd.services.events.ttrpc.v1.Events';
let cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function containerd(forward: (ctx: CallContext) => Promise<Uint8Array>): Promise<{ server: TtrpcServer; address: string; connections: () => number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tern-events-'));
  const server = new TtrpcServer({ closeGraceMs: 50 });
  let opened = 0;
  server.onConnection(() => opened++);
  server.register(SERVICE, 'Forward', (_p, ctx) => forward(ctx));
  const address = join(dir, 'containerd.sock');
  await server.listen(address);
  cleanup.push(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { server, address, connections: () => opened };
}

/** A logger that keeps its error lines. */
function recording(): { log: Logger; errors: string[] } {
  const errors: string[] = [];
  const log = Object.create(silentLogger) as Logger;
  (log as unknown as { error: (o: object, m: string) => void }).error = (_o, m) => errors.push(m);
  return { log, errors };
}

const exit = { topic: '/tasks/exit' as const, type: 'TaskExit' as const, event: { container_id: 'c1', id: 'c1', pid: 1, exit_status: 0 } };

describe('EventPublisher', () => {
  it('forwards events and closes at once when nothing is queued', async () => {
    let got = 0;
    const c = await containerd(async () => {
      got++;
      return new Uint8Array(0);
    });
    const pub = new EventPublisher(c.address, 'default', silentLogger);
    pub.publish(exit);
    pub.publish(exit);
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toBe(2);
    const t0 = performance.now();
    await pub.close(5000);
    expect(performance.now() - t0).toBeLessThan(100);
    await new Promise((r) => setTimeout(r, 100));
    expect(c.server.connections.size).toBe(0);
  });

  it('containerd never answers: close() ends at its deadline, logs the unsent events, leaves no connection and makes no new one', async () => {
    const seen: CallContext[] = [];
    const c = await containerd((ctx) => {
      seen.push(ctx);
      return new Promise(() => undefined);
    });
    const { log, errors } = recording();
    const pub = new EventPublisher(c.address, 'default', log);
    pub.publish(exit);
    pub.publish(exit);
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toHaveLength(1);

    const t0 = performance.now();
    await pub.close(100);
    const took = performance.now() - t0;
    expect(took).toBeGreaterThanOrEqual(95);
    expect(took).toBeLessThan(600);
    expect(errors).toEqual(['events not published within 100 ms of closing']);

    await new Promise((r) => setTimeout(r, 300));
    expect(c.server.connections.size).toBe(0);
    expect(c.connections()).toBe(1);
    expect(seen[0]!.signal.aborted).toBe(true);
  });
});
