// Test support: a real ttrpc server on a unix socket in a temp directory,
// standing in for the guest agent with whatever handlers a test gives it, and
// the socket connected to it. close() ends both and removes the directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TtrpcServer, type Handler } from '../../../src/ttrpc/server';

export const AGENT_SERVICE = 'tern.agent.v1.Agent';

export interface AgentEndpoint {
  server: TtrpcServer;
  /** The host's end, connected. */
  socket: Socket;
  close(): Promise<void>;
}

export async function agentEndpoint(handlers: Record<string, Handler>): Promise<AgentEndpoint> {
  const dir = mkdtempSync(join(tmpdir(), 'tern-agent-'));
  const server = new TtrpcServer({ closeGraceMs: 50 });
  for (const [method, h] of Object.entries(handlers)) server.register(AGENT_SERVICE, method, h);
  const path = join(dir, 'agent.sock');
  await server.listen(path);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect(path, () => resolve(s));
    s.once('error', reject);
  });
  return {
    server,
    socket,
    async close() {
      socket.destroy();
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
