// One attack on a server: send a byte stream over a new connection, then check
// the answers against the model, the close, and that the server is still healthy.
import { assert, expect } from 'vitest';
import { withDeadline } from './deadline';
import { chunkSizes, hexPreview } from './frames';
import { matchAnswers, model, type Expected } from './model';
import type { Rng } from './prng';
import { nextConnection, Peer, type Received } from './raw-client';
import type { Target } from './target';

export interface AttackResult {
  expected: Expected[];
  received: Received[];
}

/**
 * One connection: send `bytes` (in random pieces), wait for every answer the
 * model says is owed, end the connection, and check: exactly the owed answers
 * came, the server closed its side, dropped the connection and its calls, and
 * a new connection is still served correctly.
 */
export async function attack(target: Target, bytes: Buffer, ctx: string, rng?: Rng): Promise<AttackResult> {
  const { expected, ambiguous } = model(bytes, (req) => target.outcome(req));
  assert(!ambiguous, `${ctx}: input has no single right answer (fix the generator)`);
  const connP = nextConnection(target.server);
  const peer = await Peer.open(target.path);
  const conn = await withDeadline(connP, 5000, 'server side of the connection');
  const sizes = rng && bytes.length <= 1 << 16 ? chunkSizes(rng, bytes.length) : [bytes.length];
  let pos = 0;
  for (const n of sizes) {
    if (n > 0) peer.sock.write(bytes.subarray(pos, pos + n));
    pos += n;
  }
  const where = `${ctx} [${target.name} server; input ${hexPreview(bytes, 4096)}]`;
  await peer.until(() => peer.responses.length >= expected.length, `${expected.length} answers: ${where}`);
  peer.sock.end();
  await peer.until(() => peer.closed, `the server to close the connection: ${where}`);
  await withDeadline(conn.closed, 5000, `server side closed: ${where}`);
  expect(peer.protocolErrors, where).toEqual([]);
  expect(matchAnswers(peer.responses, expected), where).toEqual([]);
  expect(conn.inFlight, `calls left on a closed connection: ${where}`).toBe(0);
  expect(target.server.connections.has(conn), `closed connection still tracked: ${where}`).toBe(false);
  await target.healthy();
  expect(target.server.connections.size, `connections left after ${where}`).toBe(0);
  return { expected, received: peer.responses };
}

export const codes = (rs: { code: number }[]) => rs.map((r) => r.code);
