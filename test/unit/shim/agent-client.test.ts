// AgentClient's deadlines against a real ttrpc server on a unix socket whose
// handlers never answer: an ordinary call fails with DeadlineExceeded naming
// the method and the deadline, the agent is told (its handler's signal
// aborts), nothing stays pending; a client without a positive deadline is
// refused; a long poll has no deadline but ends when the channel closes.
import { afterEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../../src/shim/agent-client';
import type { CallContext } from '../../../src/ttrpc/server';
import { agentEndpoint, type AgentEndpoint } from './agent-endpoint';

let endpoint: AgentEndpoint | undefined;
afterEach(async () => {
  await endpoint?.close();
  endpoint = undefined;
});

/** A handler that never answers; records the contexts of its calls. */
function silent(seen: CallContext[]) {
  return (_payload: Buffer, ctx: CallContext) => {
    seen.push(ctx);
    return new Promise<Uint8Array>(() => undefined);
  };
}

describe('AgentClient deadlines', () => {
  it('an ordinary call the agent never answers: DeadlineExceeded naming the method and deadline; nothing left pending', async () => {
    const seen: CallContext[] = [];
    endpoint = await agentEndpoint({ GetGuestDetails: silent(seen), StartContainer: silent(seen) });
    const client = new AgentClient(endpoint.socket, 80);
    const t0 = performance.now();
    const err = await client.guestDetails().catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(err).toMatchObject({ code: 'DeadlineExceeded' });
    expect((err as Error).message).toBe('agent GetGuestDetails: ttrpc: tern.agent.v1.Agent/GetGuestDetails: deadline exceeded after 80 ms');
    await expect(client.startContainer('c1')).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    // The agent was told the deadline: its handlers were aborted, its calls are no longer in flight.
    expect(seen).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 20));
    expect(seen.every((c) => c.signal.aborted && c.deadline !== undefined)).toBe(true);
    expect([...endpoint.server.connections].map((c) => c.inFlight)).toEqual([0]);
    client.close();
  });

  it('check() and destroySandbox() take their own deadline', async () => {
    endpoint = await agentEndpoint({ Check: silent([]), DestroySandbox: silent([]) });
    const client = new AgentClient(endpoint.socket, 60_000);
    await expect(client.check(50)).rejects.toMatchObject({ code: 'DeadlineExceeded', message: expect.stringMatching(/^agent Check: .*after 50 ms$/) });
    await expect(client.destroySandbox(50)).rejects.toMatchObject({ code: 'DeadlineExceeded' });
    await expect(client.check(0)).rejects.toMatchObject({ code: 'InvalidArgument', message: 'agent Check: the deadline must be more than 0 ms (got 0)' });
    client.close();
  });

  it('refuses a client whose deadline is not positive (0 would mean none), closing the stream it was given', async () => {
    endpoint = await agentEndpoint({});
    expect(() => new AgentClient(endpoint!.socket, 0)).toThrow('agent client: the call deadline must be more than 0 ms (got 0)');
    expect(endpoint.socket.destroyed).toBe(true);
  });

  it('a long poll has no deadline but ends with Unavailable when the channel closes', async () => {
    const seen: CallContext[] = [];
    endpoint = await agentEndpoint({ WaitProcess: silent(seen), GetOOMEvent: silent(seen) });
    const client = new AgentClient(endpoint.socket, 50);
    const wait = client.waitProcess('c1', '');
    const oom = client.getOomEvent();
    await new Promise((r) => setTimeout(r, 150)); // well past the call deadline
    expect(seen).toHaveLength(2);
    expect(seen.every((c) => c.deadline === undefined && !c.signal.aborted)).toBe(true);
    client.close();
    await expect(wait).rejects.toMatchObject({ code: 'Unavailable' });
    await expect(oom).rejects.toMatchObject({ code: 'Unavailable' });
    await new Promise((r) => setTimeout(r, 20));
    // The agent saw the channel close: its long polls were aborted.
    expect(seen.every((c) => c.signal.aborted)).toBe(true);
  });
});
