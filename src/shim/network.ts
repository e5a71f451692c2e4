// Pod networking, Kata's tc-redirect model. CNI has put a veth (with the pod's
// IP) into the pod's network namespace. We add a tap device in that namespace
// and redirect every frame both ways between the veth and the tap with tc
// ingress + mirred; QEMU runs in the namespace with a virtio-net NIC on the
// tap carrying the veth's MAC, and the agent gives the guest NIC the veth's
// addresses, routes and MTU. The veth keeps its IP (frames are redirected
// before the host stack sees them), so CNI teardown works unchanged.
//
// Port-forward: containerd's CRI serves `kubectl port-forward` by dialing
// localhost:<port> inside the pod's namespace, where nothing listens (the
// listener is in the guest). So the first tap also carries a link-local /30
// (FORWARD_HOST on the tap, FORWARD_GUEST on the guest NIC): TCP to 127.0.0.1
// in the namespace is DNATed to the guest's end and SNATed to ours
// (route_localnet lets a loopback-sourced packet leave), and two tc filters
// ahead of the redirect keep the guest's IP and ARP for FORWARD_HOST in the
// namespace instead of sending them to the veth (a u32 match with a flowid and
// no action lets the packet through: hosts without act_gact have no `pass`).
import { internal, invalidArgument, TernError } from '../common/errors';
import { runCommand } from '../common/run-command';

export interface PodInterface {
  /** The pod interface in the namespace (e.g. eth0). */
  name: string;
  mac: string;
  mtu: number;
  /** CIDR strings, e.g. 10.88.0.5/16 (IPv4 and IPv6). */
  addresses: string[];
}

export interface PodRoute {
  /** "default" or a CIDR. */
  dest: string;
  gateway: string;
  /** Interface name in the pod namespace. */
  device: string;
  scope: string;
}

export interface PodNetwork {
  netnsPath: string;
  interfaces: Array<PodInterface & { tap: string }>;
  routes: PodRoute[];
}

/** The port-forward link between the namespace (on the first tap) and the guest. */
export const FORWARD_HOST = '169.254.251.1';
export const FORWARD_GUEST = '169.254.251.2';
const FORWARD_PREFIX = 30;
/** FORWARD_HOST as the u32 word at offset 24 of an ARP packet (the target protocol address). */
const FORWARD_HOST_HEX = `0x${FORWARD_HOST.split('.')
  .map((o) => Number(o).toString(16).padStart(2, '0'))
  .join('')}`;

/** The NAT rules of the port-forward, as `iptables -A`/`-D` commands. */
function forwardRules(op: '-A' | '-D', tap: string): string[] {
  return [
    `iptables -w 5 -t nat ${op} OUTPUT -d 127.0.0.1/32 -p tcp -j DNAT --to-destination ${FORWARD_GUEST}`,
    `iptables -w 5 -t nat ${op} POSTROUTING -o ${tap} -s 127.0.0.1/32 -p tcp -j SNAT --to-source ${FORWARD_HOST}`,
  ];
}

/** Pure: the namespace commands that set up the port-forward link on a tap. */
export function forwardSetupCommands(tap: string): string[] {
  return [
    `ip addr add ${FORWARD_HOST}/${FORWARD_PREFIX} dev ${tap}`,
    `echo 1 > /proc/sys/net/ipv4/conf/${tap}/route_localnet`,
    `tc filter add dev ${tap} parent ffff: prio 1 protocol ip u32 match ip dst ${FORWARD_HOST}/32 flowid :1`,
    `tc filter add dev ${tap} parent ffff: prio 2 protocol arp u32 match u32 ${FORWARD_HOST_HEX} 0xffffffff at 24 flowid :1`,
    ...forwardRules('-A', tap),
  ];
}

/** What the agent configures: the pod's interfaces, the first also with the guest's end of the port-forward link. */
export function guestInterfaces(net: PodNetwork): PodInterface[] {
  return net.interfaces.map(({ tap: _tap, ...itf }, i) => (i === 0 ? { ...itf, addresses: [...itf.addresses, `${FORWARD_GUEST}/${FORWARD_PREFIX}`] } : itf));
}

/** Deadline of one ip/tc script in a pod's network namespace. */
const NS_EXEC_TIMEOUT_MS = 10_000;

async function nsExec(netnsPath: string, script: string, timeoutMs = NS_EXEC_TIMEOUT_MS): Promise<string> {
  const args = [`--net=${netnsPath}`, '--', 'sh', '-ec', script];
  try {
    return await runCommand('nsenter', args, { timeoutMs });
  } catch (err) {
    if (err instanceof TernError && err.code === 'DeadlineExceeded') {
      throw new TernError('DeadlineExceeded', `in network namespace ${netnsPath}: ip/tc did not finish within ${timeoutMs} ms`);
    }
    // runCommand says "<command line>: <stderr>"; the script is long, the namespace is what matters.
    const what = ['nsenter', ...args].join(' ');
    const msg = (err as Error).message;
    throw internal(`in network namespace ${netnsPath}: ${msg.startsWith(`${what}: `) ? msg.slice(what.length + 2) : msg}`);
  }
}

interface IpAddr {
  ifname: string;
  address?: string;
  mtu: number;
  link_type?: string;
  addr_info?: Array<{ family: string; local: string; prefixlen: number; scope?: string }>;
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  scope?: string;
  protocol?: string;
}

/** Pure: the pod's interfaces and routes from `ip -j addr` / `ip -j route` output. */
export function parsePodNetwork(addrJson: string, routeJson: string): { interfaces: PodInterface[]; routes: PodRoute[] } {
  const links = JSON.parse(addrJson) as IpAddr[];
  const interfaces: PodInterface[] = [];
  for (const l of links) {
    if (l.link_type !== 'ether' || !l.address) continue;
    if (l.ifname.startsWith('tern')) continue; // our own taps
    const addresses = (l.addr_info ?? [])
      .filter((a) => (a.family === 'inet' || a.family === 'inet6') && a.scope !== 'link')
      .map((a) => `${a.local}/${a.prefixlen}`);
    if (addresses.length === 0) continue;
    interfaces.push({ name: l.ifname, mac: l.address, mtu: l.mtu, addresses });
  }
  const names = new Set(interfaces.map((i) => i.name));
  const routes: PodRoute[] = (JSON.parse(routeJson) as IpRoute[])
    .filter((r) => r.dev && names.has(r.dev))
    .map((r) => ({ dest: r.dst, gateway: r.gateway ?? '', device: r.dev!, scope: r.scope ?? '' }));
  return { interfaces, routes };
}

/** Safe for a shell word: interface names are [A-Za-z0-9_.-]. */
function ifname(n: string): string {
  if (!/^[A-Za-z0-9_.@-]{1,15}$/.test(n)) throw invalidArgument(`unexpected interface name ${JSON.stringify(n)}`);
  return n.replace(/@.*/, '');
}

/**
 * Reads the pod namespace: its interfaces (each with the tap it will get) and
 * routes, what QEMU (taps, MACs) and the agent (addresses, routes) need.
 * Changes nothing: the caller records the teardown, then wires it.
 */
export async function readPodNetwork(netnsPath: string): Promise<PodNetwork> {
  const out = await nsExec(netnsPath, 'ip -j addr show; echo "#-#"; ip -j route show; echo "#-#"; ip -6 -j route show 2>/dev/null || echo "[]"');
  const [addrs, routes4, routes6] = out.split('#-#\n');
  const parsed = parsePodNetwork(addrs ?? '[]', routes4 ?? '[]');
  const routes = [...parsed.routes, ...parsePodNetwork(addrs ?? '[]', routes6?.trim() || '[]').routes];
  const interfaces = parsed.interfaces.map((itf, i) => ({ ...itf, tap: `tern_tap${i}` }));
  return { netnsPath, interfaces, routes: interfaces.length === 0 ? [] : routes };
}

/** Wires a tap per pod interface (tc redirects both ways, the port-forward link); on failure undoes it. */
export async function wirePodNetwork(net: PodNetwork): Promise<void> {
  if (net.interfaces.length === 0) return;
  const script = net.interfaces
    .map((itf, i) => {
      const dev = ifname(itf.name);
      const tap = ifname(itf.tap);
      return [
        `ip tuntap add dev ${tap} mode tap`,
        `ip link set dev ${tap} mtu ${itf.mtu} up`,
        `tc qdisc add dev ${dev} ingress`,
        `tc filter add dev ${dev} parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev ${tap}`,
        `tc qdisc add dev ${tap} ingress`,
        `tc filter add dev ${tap} parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev ${dev}`,
        ...(i === 0 ? forwardSetupCommands(tap) : []),
      ].join('\n');
    })
    .join('\n');
  try {
    await nsExec(net.netnsPath, script);
  } catch (err) {
    await teardownPodNetwork(net).catch(() => undefined);
    throw err;
  }
}

/** readPodNetwork, then wirePodNetwork (for callers that record nothing in between). */
export async function setupPodNetwork(netnsPath: string): Promise<PodNetwork> {
  const net = await readPodNetwork(netnsPath);
  await wirePodNetwork(net);
  return net;
}

/** Removes the taps and redirects (idempotent; a namespace already gone is fine). */
export async function teardownPodNetwork(net: PodNetwork): Promise<void> {
  if (net.interfaces.length === 0) return;
  const script = net.interfaces
    .map((itf, i) =>
      [
        ...(i === 0 ? forwardRules('-D', ifname(itf.tap)).map((c) => `${c} 2>/dev/null || true`) : []),
        `ip link del dev ${ifname(itf.tap)} 2>/dev/null || true`,
        `tc qdisc del dev ${ifname(itf.name)} ingress 2>/dev/null || true`,
      ].join('\n'),
    )
    .join('\n');
  try {
    await nsExec(net.netnsPath, script);
  } catch {
    /* the namespace is gone, and our devices with it */
  }
}
