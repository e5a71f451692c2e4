// Guest side of pod networking: the host attached one virtio-net NIC per pod
// interface, carrying that interface's MAC. Find each NIC by MAC, give it the
// pod interface's name, MTU and addresses, then add the routes. Containers
// share the guest's network namespace (the VM is the pod's network sandbox).
import { readFileSync, readdirSync } from 'node:fs';
import { internal, invalidArgument } from '../common/errors';
import { runCommand } from '../common/run-command';

export interface GuestInterface {
  name: string;
  mac: string;
  mtu: number;
  addresses: string[];
}

export interface GuestRoute {
  dest: string;
  gateway: string;
  device: string;
  scope: string;
}

/** Deadline of one `ip` command. */
const IP_TIMEOUT_MS = 10_000;

async function ip(args: string[]): Promise<void> {
  await runCommand('ip', args, { timeoutMs: IP_TIMEOUT_MS });
}

/** The guest NIC with this MAC (lower-case compare), waiting briefly for it to appear. */
export async function nicByMac(mac: string, sysNet = '/sys/class/net', timeoutMs = 5000): Promise<string> {
  const want = mac.toLowerCase();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const n of readdirSync(sysNet)) {
      try {
        if (readFileSync(`${sysNet}/${n}/address`, 'utf8').trim().toLowerCase() === want) return n;
      } catch {
        /* vanished */
      }
    }
    if (Date.now() > deadline) throw internal(`no guest NIC with MAC ${mac}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const NAME = /^[A-Za-z0-9_.-]{1,15}$/;
const CIDR = /^[0-9A-Fa-f:.]+\/\d{1,3}$/;

/** Pure: the `ip` commands that configure the guest, in order. */
export function networkCommands(found: Array<{ itf: GuestInterface; dev: string }>, routes: GuestRoute[]): string[][] {
  const cmds: string[][] = [];
  for (const { itf, dev } of found) {
    if (!NAME.test(itf.name)) throw invalidArgument(`interface name ${JSON.stringify(itf.name)}`);
    if (!Number.isInteger(itf.mtu) || itf.mtu < 68 || itf.mtu > 65535) throw invalidArgument(`interface ${itf.name}: MTU ${itf.mtu}`);
    cmds.push(['link', 'set', 'dev', dev, 'down']);
    if (dev !== itf.name) cmds.push(['link', 'set', 'dev', dev, 'name', itf.name]);
    cmds.push(['link', 'set', 'dev', itf.name, 'mtu', String(itf.mtu)]);
    for (const a of itf.addresses) {
      if (!CIDR.test(a)) throw invalidArgument(`interface ${itf.name}: address ${JSON.stringify(a)}`);
      cmds.push(['addr', 'add', a, 'dev', itf.name]);
    }
    cmds.push(['link', 'set', 'dev', itf.name, 'up']);
  }
  // Routes with a gateway last: their gateway must be reachable first.
  const ordered = [...routes.filter((r) => !r.gateway), ...routes.filter((r) => r.gateway)];
  for (const r of ordered) {
    if (!NAME.test(r.device)) throw invalidArgument(`route device ${JSON.stringify(r.device)}`);
    if (r.dest !== 'default' && !CIDR.test(r.dest) && !/^[0-9A-Fa-f:.]+$/.test(r.dest)) throw invalidArgument(`route ${JSON.stringify(r.dest)}`);
    // Kernel-made subnet routes reappear by themselves when the address is added.
    if (!r.gateway && r.scope === 'link') continue;
    const cmd = ['route', 'add', r.dest];
    if (r.gateway) cmd.push('via', r.gateway);
    cmd.push('dev', r.device);
    if (r.dest.includes(':') || r.gateway.includes(':')) cmd.unshift('-6');
    cmds.push(cmd);
  }
  return cmds;
}

export async function configureNetwork(interfaces: GuestInterface[], routes: GuestRoute[]): Promise<void> {
  const found: Array<{ itf: GuestInterface; dev: string }> = [];
  for (const itf of interfaces) found.push({ itf, dev: await nicByMac(itf.mac) });
  for (const cmd of networkCommands(found, routes)) await ip(cmd);
}
