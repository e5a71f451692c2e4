import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePodNetwork, setupPodNetwork, teardownPodNetwork } from '../../../src/shim/network';

describe('pod network discovery', () => {
  it('takes ethernet interfaces with addresses and their routes', () => {
    const addrs = JSON.stringify([
      {
        ifname: 'lo',
        link_type: 'loopback',
        address: '00:00:00:00:00:00',
        mtu: 65536,
        addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }],
      },
      {
        ifname: 'eth0',
        link_type: 'ether',
        address: '6a:11:22:33:44:55',
        mtu: 1450,
        addr_info: [
          { family: 'inet', local: '10.88.0.7', prefixlen: 16, scope: 'global' },
          { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
        ],
      },
      { ifname: 'tern_tap0', link_type: 'ether', address: '1e:00:00:00:00:01', mtu: 1450, addr_info: [] },
    ]);
    const routes = JSON.stringify([
      { dst: 'default', gateway: '10.88.0.1', dev: 'eth0' },
      { dst: '10.88.0.0/16', dev: 'eth0', scope: 'link', protocol: 'kernel' },
      { dst: '10.1.0.0/16', dev: 'tern_tap0' },
    ]);
    expect(parsePodNetwork(addrs, routes)).toEqual({
      interfaces: [{ name: 'eth0', mac: '6a:11:22:33:44:55', mtu: 1450, addresses: ['10.88.0.7/16'] }],
      routes: [
        { dest: 'default', gateway: '10.88.0.1', device: 'eth0', scope: '' },
        { dest: '10.88.0.0/16', gateway: '', device: 'eth0', scope: 'link' },
      ],
    });
  });
});

describe('tap + tc redirect in a real network namespace', () => {
  const ns = `tern-ut-${randomBytes(3).toString('hex')}`;
  afterEach(() => {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  });

  it('wires a tap to the pod interface both ways and removes it again', async () => {
    execFileSync('ip', ['netns', 'add', ns]);
    const sh = (cmd: string) => execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', cmd], { encoding: 'utf8' });
    sh('ip link add eth0 type veth peer name peer0 && ip addr add 10.211.0.5/24 dev eth0 && ip link set eth0 up && ip route add default via 10.211.0.1');
    const path = `/run/netns/${ns}`;
    const net = await setupPodNetwork(path);
    expect(net.interfaces).toHaveLength(1);
    expect(net.interfaces[0]).toMatchObject({ name: 'eth0', tap: 'tern_tap0', addresses: ['10.211.0.5/24'], mtu: 1500 });
    expect(net.routes).toContainEqual({ dest: 'default', gateway: '10.211.0.1', device: 'eth0', scope: '' });
    expect(sh('ip -o link show tern_tap0')).toContain('tern_tap0');
    expect(sh('tc filter show dev eth0 ingress')).toMatch(/mirred \(Egress Redirect to device tern_tap0\)/);
    expect(sh('tc filter show dev tern_tap0 ingress')).toMatch(/mirred \(Egress Redirect to device eth0\)/);
    await teardownPodNetwork(net);
    expect(sh('ip -o link show')).not.toContain('tern_tap0');
    expect(sh('tc qdisc show dev eth0')).not.toContain('ingress');
    await teardownPodNetwork(net); // idempotent
  });
});

describe('port-forward link', () => {
  it('gives the first interface the guest end of the link, leaving the others and the record alone', async () => {
    const { guestInterfaces, FORWARD_GUEST } = await import('../../../src/shim/network');
    const net = {
      netnsPath: '/run/netns/x',
      interfaces: [
        { name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500, addresses: ['10.88.0.5/16'], tap: 'tern_tap0' },
        { name: 'eth1', mac: '02:00:00:00:00:02', mtu: 1500, addresses: ['10.99.0.5/16'], tap: 'tern_tap1' },
      ],
      routes: [],
    };
    const g = guestInterfaces(net);
    expect(g[0]).toEqual({ name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500, addresses: ['10.88.0.5/16', `${FORWARD_GUEST}/30`] });
    expect(g[1]).toEqual({ name: 'eth1', mac: '02:00:00:00:00:02', mtu: 1500, addresses: ['10.99.0.5/16'] });
    expect(net.interfaces[0]!.addresses).toEqual(['10.88.0.5/16']);
  });

  it('keeps IP and ARP for the namespace end ahead of the redirect, and NATs localhost TCP to the guest', async () => {
    const { forwardSetupCommands, FORWARD_HOST, FORWARD_GUEST } = await import('../../../src/shim/network');
    const cmds = forwardSetupCommands('tern_tap0');
    expect(cmds).toContain(`ip addr add ${FORWARD_HOST}/30 dev tern_tap0`);
    expect(cmds).toContain('echo 1 > /proc/sys/net/ipv4/conf/tern_tap0/route_localnet');
    // 169.254.251.1 as the ARP target protocol address word.
    expect(cmds).toContain('tc filter add dev tern_tap0 parent ffff: prio 2 protocol arp u32 match u32 0xa9fefb01 0xffffffff at 24 flowid :1');
    expect(cmds.some((c) => c.includes(`prio 1 protocol ip u32 match ip dst ${FORWARD_HOST}/32 flowid :1`))).toBe(true);
    expect(cmds).toContain(`iptables -w 5 -t nat -A OUTPUT -d 127.0.0.1/32 -p tcp -j DNAT --to-destination ${FORWARD_GUEST}`);
    expect(cmds).toContain(`iptables -w 5 -t nat -A POSTROUTING -o tern_tap0 -s 127.0.0.1/32 -p tcp -j SNAT --to-source ${FORWARD_HOST}`);
  });
});
