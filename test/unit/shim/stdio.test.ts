// ProcessIO's output copy against a real ttrpc agent endpoint and a real FIFO
// that nobody reads: the copy is held back by the full pipe (back-pressure)
// for as long as the process's IO is open; close() ends it after the grace,
// and the FIFO's descriptor is closed. A FIFO whose reader takes everything
// is closed at EOF without close().
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encode } from '../../../src/common/proto';
import { silentLogger } from '../../../src/common/logging';
import { AgentClient } from '../../../src/shim/agent-client';
import { ProcessIO } from '../../../src/shim/stdio';
import { agentEndpoint, type AgentEndpoint } from './agent-endpoint';

let endpoint: AgentEndpoint | undefined;
let dir = '';
afterEach(async () => {
  await endpoint?.close();
  endpoint = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Descriptors of this process open on `path`. */
function fdsOn(path: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      /* closed meanwhile */
    }
  }
  return n;
}

/** An agent whose ReadStdout hands out `total` bytes, then end-of-file. */
async function agentWithOutput(total: number): Promise<AgentClient> {
  let sent = 0;
  endpoint = await agentEndpoint({
    ReadStdout: async () => {
      const n = Math.min(64 * 1024, total - sent);
      sent += n;
      return encode('tern.agent.v1.ReadStreamResponse', { data: Buffer.alloc(n, 0x61), eof: n === 0 });
    },
  });
  return new AgentClient(endpoint.socket, 5000);
}

function fifo(): string {
  dir = mkdtempSync(join(tmpdir(), 'tern-stdio-'));
  const path = join(dir, 'stdout');
  execFileSync('mkfifo', [path]);
  return path;
}

const paths = (stdout: string) => ({ stdin: '', stdout, stderr: '', terminal: false });

describe('ProcessIO output copy', () => {
  it('a FIFO nobody reads holds the copy back until close(), which ends it after the grace and closes the FIFO', async () => {
    const path = fifo();
    const agent = await agentWithOutput(1 << 20); // far more than a pipe holds
    const io = new ProcessIO(paths(path), agent, 'c1', '', silentLogger, 50);
    io.start();
    await new Promise((r) => setTimeout(r, 200));
    expect(fdsOn(path)).toBe(1); // still copying, held by the full pipe
    // drained() is bounded whatever the copy does.
    const t0 = performance.now();
    await io.drained(50);
    expect(performance.now() - t0).toBeLessThan(500);

    io.close();
    const t1 = performance.now();
    await io.drained(5000);
    expect(performance.now() - t1).toBeLessThan(1000);
    expect(fdsOn(path)).toBe(0);
    agent.close();
  });

  it('a FIFO whose reader takes everything is closed at end-of-file, without close()', async () => {
    const path = fifo();
    const agent = await agentWithOutput(200 * 1024);
    let got = 0;
    const reader = createReadStream(path);
    // 'close', not 'end': the reader's own descriptor is closed just after 'end', and fdsOn counts it too.
    const ended = new Promise<void>((r) => reader.on('close', () => r()));
    reader.on('data', (d) => (got += d.length));
    const io = new ProcessIO(paths(path), agent, 'c1', '', silentLogger, 50);
    io.start();
    await io.drained(5000);
    await ended;
    expect(got).toBe(200 * 1024);
    expect(fdsOn(path)).toBe(0);
    agent.close();
  });
});
