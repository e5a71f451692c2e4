// Where `tern metrics serve` listens: `unix:/abs/path` (also `unix:///abs/path`)
// or `HOST:PORT` with a loopback HOST (127.0.0.0/8, [::1], localhost). The
// endpoint has no authentication, so anything reachable from off the node is
// refused: put a proxy with TLS and auth in front to export it.
import { isIP } from 'node:net';
import { invalidArgument } from '../../common/errors';

export type ListenAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

function isLoopback(host: string): boolean {
  if (isIP(host) === 4) return host.split('.')[0] === '127';
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** Parses a --listen value; InvalidArgument (naming the value) for a malformed or non-loopback address. */
export function parseListen(text: string): ListenAddress {
  if (text.startsWith('unix:')) {
    const path = text.startsWith('unix://') ? text.slice('unix://'.length) : text.slice('unix:'.length);
    if (!path.startsWith('/')) throw invalidArgument(`--listen ${JSON.stringify(text)}: a unix socket needs an absolute path (unix:/run/tern/metrics.sock)`);
    if (Buffer.byteLength(path) > 107) throw invalidArgument(`--listen ${JSON.stringify(text)}: unix socket path longer than 107 bytes`);
    return { kind: 'unix', path };
  }
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) throw invalidArgument(`--listen ${JSON.stringify(text)}: expected unix:/PATH or HOST:PORT (127.0.0.1:9464, [::1]:9464)`);
  const rawHost = (m[1] ?? m[2])!;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw invalidArgument(`--listen ${JSON.stringify(text)}: port must be 1..65535`);
  const host = rawHost === 'localhost' ? '127.0.0.1' : rawHost;
  if (isIP(host) === 0) throw invalidArgument(`--listen ${JSON.stringify(text)}: ${rawHost} is not an IP address (use 127.0.0.1 or [::1])`);
  if (!isLoopback(host)) {
    throw invalidArgument(
      `--listen ${JSON.stringify(text)}: ${rawHost} is not a loopback address; the endpoint has no authentication, so it listens on loopback or a unix socket only`,
    );
  }
  return { kind: 'tcp', host, port };
}

export function formatListen(a: ListenAddress): string {
  if (a.kind === 'unix') return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
