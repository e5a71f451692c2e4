// A model of what server.ts answers to a byte stream, and the matching of the
// answers a connection received against it.
import { FrameDecoder, FrameType } from '../../../../src/ttrpc/frame-codec';
import { decodeRequest, encodeResponse, type RequestMessage } from '../../../../src/ttrpc/messages';
import { Code, oversizeMessage } from '../../../../src/ttrpc/status';
import { hexPreview, MAX } from './frames';
import type { Received } from './raw-client';

export const ODD_ID_MESSAGE = 'StreamID must be odd for client initiated streams';

/** What one request frame gets: a status code (0 = ok), and what the message or payload must be. */
export interface Outcome {
  code: number;
  message?: string;
  payload?: (p: Buffer) => boolean;
  what?: string;
}
export type HandlerOutcome = Outcome | 'unregistered' | 'ambiguous';

export interface Expected {
  streamId: number;
  outcome: Outcome;
}

/**
 * Which answers a server owes for a byte stream, following server.ts in its
 * order: non-Request frames are ignored, even ids get InvalidArgument, oversize
 * frames ResourceExhausted, undecodable envelopes InvalidArgument, unknown
 * service/method Unimplemented, the rest what the handler says. `ambiguous`
 * when the answer depends on timing (a stream id reused while maybe in flight,
 * a handler that waits): generators discard such inputs.
 */
export function model(bytes: Buffer, handlerOutcome: (req: RequestMessage) => HandlerOutcome): { expected: Expected[]; ambiguous: boolean } {
  const expected: Expected[] = [];
  const handled = new Set<number>();
  for (const f of new FrameDecoder().push(bytes)) {
    const { streamId } = f;
    if (f.type !== FrameType.Request) continue;
    if (streamId % 2 === 0) {
      expected.push({ streamId, outcome: { code: Code.InvalidArgument, message: ODD_ID_MESSAGE } });
      continue;
    }
    if (f.oversize !== undefined) {
      expected.push({ streamId, outcome: { code: Code.ResourceExhausted, message: oversizeMessage(f.oversize, MAX) } });
      continue;
    }
    if (handled.has(streamId)) return { expected, ambiguous: true };
    let req: RequestMessage;
    try {
      req = decodeRequest(f.payload);
    } catch (err) {
      expected.push({ streamId, outcome: { code: Code.InvalidArgument, message: `unmarshal request error: ${(err as Error).message}` } });
      continue;
    }
    const o = handlerOutcome(req);
    if (o === 'ambiguous') return { expected, ambiguous: true };
    if (o === 'unregistered') {
      expected.push({ streamId, outcome: { code: Code.Unimplemented } });
      continue;
    }
    handled.add(streamId);
    expected.push({ streamId, outcome: o });
  }
  return { expected, ambiguous: false };
}

/** Does a message the server sent satisfy the expected one? A message too long for one frame arrives cut. */
function messageMatches(got: string, want: string, code: number): boolean {
  if (got === want) return true;
  const fits = encodeResponse({ status: { code, message: want, details: [] }, payload: Buffer.alloc(0) }).length <= MAX;
  const cut = got.endsWith('\uFFFD') ? got.slice(0, -1) : got;
  return !fits && cut.length >= MAX / 2 && want.startsWith(cut);
}

function satisfies(r: Received, o: Outcome): boolean {
  if (r.code !== o.code) return false;
  if (o.message !== undefined && !messageMatches(r.message, o.message, o.code)) return false;
  if (o.payload && !o.payload(r.payload)) return false;
  return true;
}

const show = (r: Received) => `{id=${r.streamId} code=${r.code} msg=${JSON.stringify(r.message.slice(0, 80))} payload=${hexPreview(r.payload, 24)}}`;
const showExpected = (e: Expected) =>
  `{id=${e.streamId} code=${e.outcome.code}${e.outcome.message !== undefined ? ` msg=${JSON.stringify(e.outcome.message.slice(0, 80))}` : ''}${e.outcome.what ? ` ${e.outcome.what}` : ''}}`;

/** Pair every expected answer with one received on the same stream; report what is missing or extra. */
export function matchAnswers(received: Received[], expected: Expected[]): string[] {
  const byStream = new Map<number, { list: Received[]; used: boolean[]; first: number }>();
  for (const r of received) {
    let s = byStream.get(r.streamId);
    if (!s) byStream.set(r.streamId, (s = { list: [], used: [], first: 0 }));
    s.list.push(r);
    s.used.push(false);
  }
  const problems: string[] = [];
  for (const e of expected) {
    const s = byStream.get(e.streamId);
    let found = -1;
    if (s) {
      while (s.first < s.list.length && s.used[s.first]) s.first++;
      for (let i = s.first; i < s.list.length; i++) {
        if (!s.used[i] && satisfies(s.list[i]!, e.outcome)) {
          found = i;
          break;
        }
      }
    }
    if (found < 0) problems.push(`missing ${showExpected(e)}; on that stream got ${(s?.list ?? []).slice(0, 4).map(show).join(', ') || 'nothing'}`);
    else s!.used[found] = true;
  }
  for (const s of byStream.values()) {
    s.list.forEach((r, i) => {
      if (!s.used[i]) problems.push(`unexpected answer ${show(r)}`);
    });
  }
  return problems.slice(0, 10);
}
