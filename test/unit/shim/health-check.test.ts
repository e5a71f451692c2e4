// The health check against a real ttrpc agent endpoint (in-process, over a
// socket pair) that answers Check, stays silent, or answers other calls.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TtrpcServer } from '../../../src/ttrpc/server';
import { encode } from '../../../src/common/proto';
import { silentLogger } from '../../../src/common/logging';
import { AgentClient } from '../../../src/shim/agent-client';
import { HealthCheck } from '../../../src/shim/health-check';

const SERVICE = 'tern.agent.v1.Agent';
let cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.reverse()) f();
  cleanup = [];
});

/** An agent whose Check answers while `healthy()` says so (else never), and which answers GetGuestDetails always. */
async function agent(healthy: () => boolean): Promise<AgentClient> {
  const dir = mkdtempSync(join(tmpdir(), 'tern-health-'));
  const server = new TtrpcServer();
  server.register(SERVICE, 'Check', () =>
    healthy() ? Promise.resolve(encode('tern.agent.v1.CheckResponse', { agent_version: 't', uptime_ms: 1 })) : new Promise(() => undefined),
  );
  server.register(SERVICE, 'GetGuestDetails', async () =>
    encode('tern.agent.v1.GuestDetailsResponse', { kernel_release: 'k', agent_version: 't', cpus: 1, memory_bytes: 1 }),
  );
  const sockets: Socket[] = [];
  const srv: Server = createServer((s) => {
    sockets.push(s);
    server.serve(s);
  });
  const path = join(dir, 'a.sock');
  await new Promise<void>((r) => srv.listen(path, r));
  const sock = await new Promise<Socket>((r) => {
    const s = connect(path, () => r(s));
  });
  const client = new AgentClient(sock, 1000);
  cleanup.push(() => {
    client.close();
    for (const s of sockets) s.destroy();
    srv.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return client;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('HealthCheck', () => {
  it('reports the guest lost after `failures` unanswered checks in a row, once, with why', async () => {
    const client = await agent(() => false);
    const lost: string[] = [];
    const h = new HealthCheck(client, { intervalMs: 20, timeoutMs: 50, failures: 3 }, silentLogger, (r) => lost.push(r));
    h.start();
    await sleep(600);
    h.stop();
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatch(/^guest agent did not answer 3 health checks in a row \(last: /);
  });

  it('keeps quiet while the agent answers, and when it answered another call meanwhile (busy, not hung)', async () => {
    let healthy = true;
    const client = await agent(() => healthy);
    const lost: string[] = [];
    const h = new HealthCheck(client, { intervalMs: 20, timeoutMs: 60, failures: 2 }, silentLogger, (r) => lost.push(r));
    h.start();
    await sleep(200);
    expect(lost).toEqual([]);
    healthy = false;
    // other calls keep landing while Check goes unanswered
    const busy = setInterval(() => void client.guestDetails().catch(() => undefined), 10);
    await sleep(500);
    clearInterval(busy);
    expect(lost).toEqual([]);
    h.stop();
  });

  it('does nothing with interval 0, or after stop()', async () => {
    const client = await agent(() => false);
    const lost: string[] = [];
    new HealthCheck(client, { intervalMs: 0, timeoutMs: 10, failures: 1 }, silentLogger, (r) => lost.push(r)).start();
    const h = new HealthCheck(client, { intervalMs: 10, timeoutMs: 10, failures: 1 }, silentLogger, (r) => lost.push(r));
    h.start();
    h.stop();
    await sleep(200);
    expect(lost).toEqual([]);
  });
});
