// --listen: a unix socket (absolute path) or a loopback TCP address; any
// address reachable from off the node is refused.
import { describe, expect, it } from 'vitest';
import { formatListen, parseListen } from '../../../../src/cli/metrics/listen';

describe('parseListen', () => {
  it('takes unix sockets with an absolute path', () => {
    expect(parseListen('unix:/run/tern/metrics.sock')).toEqual({ kind: 'unix', path: '/run/tern/metrics.sock' });
    expect(parseListen('unix:///run/tern/metrics.sock')).toEqual({ kind: 'unix', path: '/run/tern/metrics.sock' });
    expect(() => parseListen('unix:metrics.sock')).toThrow(/absolute path/);
    expect(() => parseListen(`unix:/${'x'.repeat(120)}`)).toThrow(/longer than 107 bytes/);
  });

  it('takes loopback TCP addresses', () => {
    expect(parseListen('127.0.0.1:9464')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9464 });
    expect(parseListen('127.1.2.3:1')).toEqual({ kind: 'tcp', host: '127.1.2.3', port: 1 });
    expect(parseListen('[::1]:9464')).toEqual({ kind: 'tcp', host: '::1', port: 9464 });
    expect(parseListen('localhost:9464')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9464 });
  });

  it('refuses non-loopback addresses, naming why', () => {
    for (const a of ['0.0.0.0:9464', '10.0.0.5:9464', '[::]:9464', '[2001:db8::1]:9464', '[::ffff:127.0.0.1]:9464', '192.168.1.1:80']) {
      expect(() => parseListen(a), a).toThrow(/is not a loopback address; the endpoint has no authentication/);
    }
    expect(() => parseListen('example.com:9464')).toThrow(/not an IP address/);
  });

  it('refuses malformed addresses and ports', () => {
    for (const a of ['9464', ':9464', '127.0.0.1', '127.0.0.1:', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:94x', '::1:9464', 'http://127.0.0.1:9464']) {
      expect(() => parseListen(a), a).toThrow(/--listen/);
    }
  });

  it('formats back what it parsed', () => {
    for (const a of ['unix:/run/m.sock', '127.0.0.1:9464', '[::1]:9464']) expect(formatListen(parseListen(a))).toBe(a);
  });
});
