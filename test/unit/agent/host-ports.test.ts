import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HostPortMirror } from '../../../src/agent/host-ports';

/** A server on 127.0.0.2 (standing in for the node) that answers each connection with `reply`. */
function nodeServer(reply: string): Promise<net.Server> {
  return new Promise((resolve) => {
    const srv = net.createServer((s) => s.end(reply));
    srv.listen({ host: '127.0.0.2', port: 0 }, () => resolve(srv));
  });
}

function fetchFrom(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let got = '';
    s.setEncoding('utf8').on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
  });
}

describe('node ports mirrored on the guest loopback', () => {
  const closers: Array<() => void> = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  it('relays a connection to the node, skips a port already held, and closes what leaves the set', async () => {
    const node = await nodeServer('from-node');
    closers.push(() => node.close());
    const port = (node.address() as net.AddressInfo).port;
    const mirror = new HostPortMirror();
    closers.push(() => void mirror.set([], '127.0.0.2'));

    expect(await mirror.set([port], '127.0.0.2')).toEqual([port]);
    expect(await fetchFrom(port)).toBe('from-node');

    // A port some guest process holds on loopback stays that process's.
    const held = await new Promise<net.Server>((resolve) => {
      const srv = net.createServer((s) => s.end('guest'));
      srv.listen({ host: '127.0.0.1', port: 0 }, () => resolve(srv));
    });
    closers.push(() => held.close());
    const heldPort = (held.address() as net.AddressInfo).port;
    expect(await mirror.set([port, heldPort], '127.0.0.2')).toEqual([port]);
    expect(await fetchFrom(heldPort)).toBe('guest');

    expect(await mirror.set([], '127.0.0.2')).toEqual([]);
    await expect(fetchFrom(port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('refuses a relay address that is no IP', async () => {
    await expect(new HostPortMirror().set([80], 'node')).rejects.toThrow(/no IP address/);
  });
});
