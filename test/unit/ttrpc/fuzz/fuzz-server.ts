// The "fuzz" server: a TtrpcServer built as the guest agent builds its own
// (src/agent/main.ts: `new TtrpcServer()`, default options) with a few test
// handlers, what each of them answers, and valid requests for it.
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { expect } from 'vitest';
import { TernError } from '../../../../src/common/errors';
import { decode, encode } from '../../../../src/common/proto';
import type { RequestMessage } from '../../../../src/ttrpc/messages';
import { TtrpcServer } from '../../../../src/ttrpc/server';
import { Code } from '../../../../src/ttrpc/status';
import { withDeadline } from './deadline';
import { request } from './frames';
import type { HandlerOutcome } from './model';
import { randomMetadata } from './mutations';
import type { Rng } from './prng';
import { FUZZ_SVC, healthCheck, T, type Target } from './target';

// State as the fuzz server's echo handler answers it.
type IdRequest = { id: string; exec_id: string };

function fuzzOutcome(req: RequestMessage): HandlerOutcome {
  if (req.service !== FUZZ_SVC) return 'unregistered';
  switch (req.method) {
    case 'State': {
      let body: IdRequest;
      try {
        body = decode<IdRequest>(`${T}StateRequest`, req.payload);
      } catch (err) {
        return { code: Code.InvalidArgument, message: `bad StateRequest: ${(err as Error).message}` };
      }
      return {
        code: Code.OK,
        what: `StateResponse id=${JSON.stringify(body.id)}`,
        payload: (p) => {
          const res = decode<{ id: string; exec_id: string; status: number }>(`${T}StateResponse`, p);
          return res.id === body.id && res.exec_id === body.exec_id && res.status === 2;
        },
      };
    }
    case 'Throw':
      return { code: Code.FailedPrecondition, message: `rejected: ${req.payload.toString('hex')}` };
    case 'Meta': {
      const want = new Map<string, string[]>();
      for (const { key, value } of req.metadata) {
        const k = key.toLowerCase();
        want.set(k, [...(want.get(k) ?? []), value]);
      }
      const entries = [...want.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return { code: Code.OK, what: `metadata ${JSON.stringify(entries).slice(0, 80)}`, payload: (p) => isDeepStrictEqual(JSON.parse(p.toString()), entries) };
    }
    case 'Block':
      return 'ambiguous';
    default:
      return 'unregistered';
  }
}

function fuzzValidRequest(rng: Rng): Buffer {
  const extra: Partial<RequestMessage> = rng.chance(0.2) ? { timeoutNano: rng.pick([1, 1000, 5e9, -5, 2 ** 53 - 1]) } : {};
  switch (rng.int(3)) {
    case 0:
      return request(FUZZ_SVC, 'State', encode(`${T}StateRequest`, { id: rng.string(24), exec_id: rng.string(8) }), extra);
    case 1:
      return request(FUZZ_SVC, 'Throw', rng.bytes(rng.int(32)), extra);
    default:
      return request(FUZZ_SVC, 'Meta', Buffer.alloc(0), { ...extra, metadata: randomMetadata(rng) });
  }
}

/** Calls to Block: how many started and were aborted, and how to let the waiting ones answer. */
export interface BlockCalls {
  started: number;
  aborted: number;
  release: Array<() => void>;
}

/** Start the fuzz server on dir/fuzz.sock; its Block handler counts into `block`. */
export async function startFuzzServer(dir: string, block: BlockCalls): Promise<Target> {
  // Configured as the agent configures its server (src/agent/main.ts): default options.
  const fuzz = new TtrpcServer();
  fuzz.register(FUZZ_SVC, 'State', async (payload) => {
    let req: IdRequest;
    try {
      req = decode<IdRequest>(`${T}StateRequest`, payload);
    } catch (err) {
      throw new TernError('InvalidArgument', `bad StateRequest: ${(err as Error).message}`);
    }
    return encode(`${T}StateResponse`, { id: req.id, exec_id: req.exec_id, status: 2 });
  });
  fuzz.register(FUZZ_SVC, 'Throw', async (payload) => {
    throw new TernError('FailedPrecondition', `rejected: ${payload.toString('hex')}`);
  });
  fuzz.register(FUZZ_SVC, 'Meta', async (_payload, ctx) => {
    const entries = Object.entries(ctx.metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return Buffer.from(JSON.stringify(entries));
  });
  fuzz.register(
    FUZZ_SVC,
    'Block',
    (payload, ctx) =>
      new Promise<Uint8Array>((resolve, reject) => {
        block.started++;
        block.release.push(() => resolve(payload));
        ctx.signal.addEventListener('abort', () => {
          block.aborted++;
          reject(ctx.signal.reason);
        });
      }),
  );
  const fuzzPath = join(dir, 'fuzz.sock');
  await fuzz.listen(fuzzPath);
  return {
    name: 'fuzz',
    server: fuzz,
    path: fuzzPath,
    outcome: fuzzOutcome,
    validRequest: fuzzValidRequest,
    garbageRequest: (rng) => request(FUZZ_SVC, 'State', rng.bytes(rng.int(40))),
    healthy: () =>
      healthCheck(fuzz, fuzzPath, async (client) => {
        const id = `healthy-${block.started}-${Date.now()}`;
        const reply = await withDeadline(client.call(FUZZ_SVC, 'State', encode(`${T}StateRequest`, { id, exec_id: 'e1' })), 5000, 'health check');
        expect(decode(`${T}StateResponse`, reply)).toMatchObject({ id, exec_id: 'e1', status: 2 });
      }),
  };
}
