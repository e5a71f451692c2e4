import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePodNetwork, setupPodNetwork, teardownPodNetwork } from '../../../src/shim/network';

describe('pod network discovery', () => {
  it('takes ethernet interfaces with addresses and their routes', () => {
    const addrs = JSON.stringify([
      { ifname: 'lo', link_type: 'loopback', address: '00:00:00:00:00:00', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
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
