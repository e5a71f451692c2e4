// Host networking: which TCP ports are listened on, from /proc/net/tcp and
// tcp6 of one network stack. The guest's (but those on loopback only, the
// guest's own business) are forwarded from the node; the node's (a QEMU's
// network namespace, /proc/<pid>/net) are mirrored into the guest.
import { readFile } from 'node:fs/promises';

/** How often a watch rereads the tables while nothing changed. */
const WATCH_INTERVAL_MS = 1000;
const TCP_LISTEN = '0A';

/** True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104, as /proc/net/tcp{,6} print them (each 32-bit word in host order). */
function isLoopback(hexAddr: string): boolean {
  const a = hexAddr.toUpperCase();
  if (a.length === 8) return a.endsWith('7F');
  if (a === '00000000000000000000000001000000') return true;
  return a.startsWith('0000000000000000FFFF0000') && a.endsWith('7F');
}

/** Pure: the listening ports in the text of /proc/net/tcp or tcp6 (without those on loopback only, unless asked). */
export function listeningPorts(table: string, withLoopback = false): number[] {
  const ports = new Set<number>();
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[3] !== TCP_LISTEN) continue;
    const [addr, portHex] = f[1]!.split(':');
    if (!addr || !portHex || (!withLoopback && isLoopback(addr))) continue;
    const port = parseInt(portHex, 16);
    if (port > 0 && port < 65536) ports.add(port);
  }
  return [...ports];
}

async function readTable(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return ''; // no IPv6 in this kernel
  }
}

/** The TCP listening ports of the stack behind procNet (without loopback-only ones, unless asked), sorted. */
export async function tcpListeners(procNet = '/proc/net', withLoopback = false): Promise<number[]> {
  const [v4, v6] = await Promise.all([readTable(`${procNet}/tcp`), readTable(`${procNet}/tcp6`)]);
  return [...new Set([...listeningPorts(v4, withLoopback), ...listeningPorts(v6, withLoopback)])].sort((a, b) => a - b);
}

const same = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

/**
 * Answers the (non-loopback) listening ports once they differ from `known` (sorted), at once
 * if they already do; rereads every WATCH_INTERVAL_MS meanwhile. Rejects with
 * the signal's reason when the caller goes away.
 */
export async function watchListeners(known: readonly number[], signal: AbortSignal, procNet = '/proc/net', intervalMs = WATCH_INTERVAL_MS): Promise<number[]> {
  const want = [...known].sort((a, b) => a - b);
  for (;;) {
    signal.throwIfAborted();
    const now = await tcpListeners(procNet);
    if (!same(now, want)) return now;
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        clearTimeout(timer);
        reject(signal.reason);
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, intervalMs);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
