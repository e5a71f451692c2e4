import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT_PORT_RETRY, DEBUG_PORT_RETRY, nextIdleWait, servePort, type IdleRetry, type PortSession } from '../../../src/agent/port';

describe('nextIdleWait', () => {
  it('starts at firstMs, grows by factor and stops at maxMs', () => {
    const waits: number[] = [];
    let w: number | undefined;
    for (let i = 0; i < 9; i++) waits.push((w = nextIdleWait(DEBUG_PORT_RETRY, w)));
    expect(waits).toEqual([20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
  });

  it('keeps the agent port at its short wait: a host connects to it on the start path', () => {
    expect(nextIdleWait(AGENT_PORT_RETRY, undefined)).toBe(20);
    expect(nextIdleWait(AGENT_PORT_RETRY, 20)).toBe(20);
  });
});

class Stop extends Error {}

describe('servePort', () => {
  // A regular file stands in for a port whose host is away: every read past its end returns 0.
  it('backs off while nothing comes, and starts again from the first wait after data', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-port-'));
    const file = join(dir, 'port');
    writeFileSync(file, '');
    const retry: IdleRetry = { firstMs: 10, maxMs: 40, factor: 2 };
    const waits: number[] = [];
    const received: string[] = [];
    const sessions: PortSession[] = [];
    let sentAt = 0;
    const sleep = async (ms: number) => {
      waits.push(ms);
      // After four empty reads the "host" sends a line; after eleven, the test ends.
      if (waits.length === 4) {
        sentAt = performance.now();
        appendFileSync(file, 'hello');
      }
      if (waits.length === 11) throw new Stop();
    };
    const onSession = (s: PortSession) => {
      sessions.push(s);
      s.on('data', (b: Buffer) => received.push(b.toString()));
    };
    try {
      await expect(servePort(file, onSession, () => undefined, retry, sleep)).rejects.toBeInstanceOf(Stop);
      expect(waits).toEqual([10, 20, 40, 40, 10, 20, 40, 40, 40, 40, 40]);
      expect(sessions).toHaveLength(1);
      expect(received.join('')).toBe('hello');
      // When the host's bytes were read: after they were sent.
      expect(sessions[0]!.lastDataAt).toBeGreaterThanOrEqual(sentAt);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
