// Services typed from the protos, end to end over an in-memory channel: a
// whole service registered from one object, a client typed from the same
// descriptors, a bad request refused naming its type, an unknown method
// still Unimplemented, and an implementation missing a method refused.
import { afterEach, describe, expect, it } from 'vitest';
import { registerService, ServiceClient, type ServiceImpl } from '../../../src/common/proto-service';
import { TtrpcClient } from '../../../src/ttrpc/client';
import { TtrpcServer } from '../../../src/ttrpc/server';
import { Code, TtrpcError } from '../../../src/ttrpc/status';
import { duplexPair } from '../ttrpc/duplex-pair';

const AGENT = 'tern.agent.v1.Agent' as const;

/** An Agent that answers Check and SetHostname; every other method is a stub that must not be reached. */
function agentImpl(seen: string[]): ServiceImpl<typeof AGENT> {
  const unexpected = () => {
    throw new Error('not reached');
  };
  return {
    Check: () => ({ agent_version: 'test', uptime_ms: 7 }),
    SetHostname: (r) => {
      seen.push(r.hostname);
    },
    GetGuestDetails: unexpected,
    CreateContainer: unexpected,
    StartContainer: unexpected,
    RemoveContainer: unexpected,
    ExecProcess: unexpected,
    SignalProcess: unexpected,
    WaitProcess: unexpected,
    ListProcesses: unexpected,
    ReadStdout: unexpected,
    ReadStderr: unexpected,
    WriteStdin: unexpected,
    CloseStdin: unexpected,
    TtyWinResize: unexpected,
    DestroySandbox: unexpected,
    PauseContainer: unexpected,
    ResumeContainer: unexpected,
    UpdateContainer: unexpected,
    StatsContainer: unexpected,
    StatsPressure: unexpected,
    GetOOMEvent: unexpected,
    ConfigureNetwork: unexpected,
    AdoptIdentity: unexpected,
    HoldForPool: unexpected,
    OnlineCpus: unexpected,
    WatchListeners: unexpected,
    MirrorHostPorts: unexpected,
  };
}

describe('typed services', () => {
  const closers: Array<() => void> = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  const connect = (impl: ServiceImpl<typeof AGENT>) => {
    const server = new TtrpcServer();
    const methods = [...registerService(server, AGENT, impl).keys()];
    const [a, b] = duplexPair();
    server.serve(a);
    const raw = new TtrpcClient(b);
    closers.push(
      () => raw.close(),
      () => void server.close(),
    );
    const client = new ServiceClient(AGENT, (method, payload, timeoutMs) => raw.call(AGENT, method, payload, timeoutMs ? { timeoutMs } : {}));
    return { methods, client, raw };
  };

  it('registers every method of the service and answers typed calls', async () => {
    const seen: string[] = [];
    const { methods, client } = connect(agentImpl(seen));
    expect(methods).toContain('Check');
    expect(methods).toContain('MirrorHostPorts');
    expect(methods).toHaveLength(28);
    const r = await client.call('Check', {}, 5000);
    expect(r).toEqual({ agent_version: 'test', uptime_ms: 7, writable_premounted: false });
    // A method answering nothing answers the empty message.
    expect(await client.call('SetHostname', { hostname: 'pod-a' }, 5000)).toEqual({});
    expect(seen).toEqual(['pod-a']);
  });

  it('refuses a request that is no valid message of its type, naming it; an unknown method is Unimplemented', async () => {
    const { raw } = connect(agentImpl([]));
    const bad = await raw.call(AGENT, 'SetHostname', Buffer.from([0x0a, 0xff]), { timeoutMs: 5000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(bad).toBeInstanceOf(TtrpcError);
    expect((bad as TtrpcError).code).toBe(Code.InvalidArgument);
    expect((bad as TtrpcError).message).toMatch(/SetHostname: cannot decode tern\.agent\.v1\.SetHostnameRequest/);
    const unknown = await raw.call(AGENT, 'NoSuchMethod', Buffer.alloc(0), { timeoutMs: 5000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((unknown as TtrpcError).code).toBe(Code.Unimplemented);
  });

  it('refuses an implementation that lacks a method of the service', () => {
    const impl = agentImpl([]) as unknown as Record<string, unknown>;
    delete impl.OnlineCpus;
    expect(() => registerService(new TtrpcServer(), AGENT, impl as unknown as ServiceImpl<typeof AGENT>)).toThrow(/no implementation of OnlineCpus/);
  });
});
