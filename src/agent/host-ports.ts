// Host networking, the node's side: the node's listening TCP ports are
// mirrored on the guest's loopback, so a host-network pod reaches a node
// service at localhost:<port> as it would on the node, and finds the port
// taken (in netstat, at bind) as it would there. Each connection is relayed
// to the node through the hypervisor's user network (`via`, its gateway,
// which is the node's loopback). Loopback-only, so the guest-side watch
// (listeners.ts) never forwards a mirror back to the node.
import net from 'node:net';

export class HostPortMirror {
  private readonly servers = new Map<number, net.Server>();

  /** Makes the mirrored set `ports`; answers those mirrored now (a port a guest process holds is skipped). */
  async set(ports: readonly number[], via: string): Promise<number[]> {
    if (net.isIP(via) === 0) throw new Error(`mirror host ports: via ${JSON.stringify(via)} is no IP address`);
    const want = new Set(ports.filter((p) => Number.isInteger(p) && p > 0 && p < 65536));
    for (const [port, srv] of this.servers) {
      if (want.has(port)) continue;
      srv.close();
      this.servers.delete(port);
    }
    for (const port of want) {
      if (this.servers.has(port)) continue;
      const srv = await listen(port, via).catch(() => undefined);
      if (srv) this.servers.set(port, srv);
    }
    return [...this.servers.keys()].sort((a, b) => a - b);
  }
}

function listen(port: number, via: string): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((client) => relay(client, port, via));
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      srv.off('error', reject);
      srv.on('error', () => undefined);
      resolve(srv);
    });
  });
}

function relay(client: net.Socket, port: number, via: string): void {
  const node = net.connect({ host: via, port });
  const end = () => {
    client.destroy();
    node.destroy();
  };
  for (const s of [client, node]) {
    s.on('error', end);
    s.on('close', end);
  }
  client.pipe(node);
  node.pipe(client);
}
