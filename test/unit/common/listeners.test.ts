import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listeningPorts, tcpListeners, watchListeners } from '../../../src/common/listeners';

const HEAD = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
// 0.0.0.0:8080 listening, 127.0.0.1:9000 listening, 10.0.2.15:8080 established, 10.0.2.15:12003 listening
const TCP4 =
  HEAD +
  '   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 100 1 0 100 0 0 10 0\n' +
  '   1: 0100007F:2328 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 101 1 0 100 0 0 10 0\n' +
  '   2: 0F02000A:1F90 0202000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 102 1 0 20 4 30 10 -1\n' +
  '   3: 0F02000A:2EE3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 103 1 0 100 0 0 10 0\n';
// [::]:80 listening, [::1]:81 listening, ::ffff:127.0.0.1:82 listening
const TCP6 =
  HEAD +
  '   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 200 1 0 100 0 0 10 0\n' +
  '   1: 00000000000000000000000001000000:0051 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 201 1 0 100 0 0 10 0\n' +
  '   2: 0000000000000000FFFF00000100007F:0052 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 202 1 0 100 0 0 10 0\n';

describe('guest listening ports', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tern-procnet-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('takes LISTEN sockets not bound to loopback, IPv4 and IPv6', () => {
    expect(listeningPorts(TCP4).sort((a, b) => a - b)).toEqual([8080, 12003]);
    expect(listeningPorts(TCP6)).toEqual([80]);
    expect(listeningPorts('')).toEqual([]);
    // The node's side is mirrored whole: loopback listeners too.
    expect(listeningPorts(TCP4, true).sort((a, b) => a - b)).toEqual([8080, 9000, 12003]);
    expect(listeningPorts(TCP6, true)).toEqual([80, 81, 82]);
  });

  it('merges both tables sorted, and a missing tcp6 is no IPv6', async () => {
    writeFileSync(join(dir, 'tcp'), TCP4);
    expect(await tcpListeners(dir)).toEqual([8080, 12003]);
    writeFileSync(join(dir, 'tcp6'), TCP6);
    expect(await tcpListeners(dir)).toEqual([80, 8080, 12003]);
  });

  it('a watch answers at once when the ports differ, later when they change, and ends when its caller goes away', async () => {
    writeFileSync(join(dir, 'tcp'), TCP4);
    const signal = new AbortController().signal;
    expect(await watchListeners([], signal, dir, 10)).toEqual([8080, 12003]);

    const changed = watchListeners([12003, 8080], signal, dir, 10);
    setTimeout(() => writeFileSync(join(dir, 'tcp'), HEAD), 30);
    expect(await changed).toEqual([]);

    const ac = new AbortController();
    const waiting = watchListeners([], ac.signal, dir, 10);
    setTimeout(() => ac.abort(new Error('caller gone')), 30);
    await expect(waiting).rejects.toThrow('caller gone');
  });
});
