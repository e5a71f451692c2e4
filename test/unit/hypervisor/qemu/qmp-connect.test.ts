// QmpClient.connect while the socket path exists but nobody listens on it yet
// (QEMU binds before it listens): the refused connect is retried until the
// deadline, so a busy host's slow QEMU is not mistaken for a dead one.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpClient } from '../../../../src/hypervisor/qemu/qmp.js';

let dir: string;
let server: net.Server | undefined;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-qmp-connect-'));
});
afterEach(() => {
  server?.close();
  server = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A minimal QMP server: greeting, then an empty return for every command. */
function fakeQmp(sock: string): Promise<void> {
  server = net.createServer((c) => {
    c.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
    c.on('data', (d) => {
      for (const line of d
        .toString()
        .split('\n')
        .filter((l) => l.trim() !== '')) {
        const id = (JSON.parse(line) as { id?: unknown }).id;
        c.write(`${JSON.stringify({ return: {}, id })}\r\n`);
      }
    });
  });
  return new Promise((resolve) => server!.listen(sock, resolve));
}

describe('QmpClient.connect', () => {
  it('retries a refused connect until the server listens', async () => {
    const sock = path.join(dir, 'qmp.sock');
    fs.writeFileSync(sock, ''); // exists, refuses connections (ECONNREFUSED)
    const connecting = QmpClient.connect(sock, 5000);
    await new Promise((r) => setTimeout(r, 150));
    fs.rmSync(sock);
    await fakeQmp(sock);
    const client = await connecting;
    expect(client.closed).toBe(false);
    client.close();
  });

  it('gives up at the deadline with the refusal named', async () => {
    const sock = path.join(dir, 'qmp.sock');
    fs.writeFileSync(sock, '');
    const t0 = Date.now();
    await expect(QmpClient.connect(sock, 300)).rejects.toThrow(/ECONNREFUSED/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });
});
