import { describe, expect, it } from 'vitest';
import { networkCommands } from '../../../src/agent/network';

describe('guest network commands', () => {
  it('renames the NIC found by MAC, sets MTU and addresses, then routes (gateway routes last)', () => {
    const cmds = networkCommands(
      [{ itf: { name: 'eth0', mac: '6a:11:22:33:44:55', mtu: 1450, addresses: ['10.88.0.7/16'] }, dev: 'enp0s3' }],
      [
        { dest: 'default', gateway: '10.88.0.1', device: 'eth0', scope: '' },
        { dest: '10.88.0.0/16', gateway: '', device: 'eth0', scope: 'link' },
        { dest: '10.99.0.0/16', gateway: '', device: 'eth0', scope: '' },
      ],
    );
    expect(cmds).toEqual([
      ['link', 'set', 'dev', 'enp0s3', 'down'],
      ['link', 'set', 'dev', 'enp0s3', 'name', 'eth0'],
      ['link', 'set', 'dev', 'eth0', 'mtu', '1450'],
      ['addr', 'add', '10.88.0.7/16', 'dev', 'eth0'],
      ['link', 'set', 'dev', 'eth0', 'up'],
      ['route', 'add', '10.99.0.0/16', 'dev', 'eth0'],
      ['route', 'add', 'default', 'via', '10.88.0.1', 'dev', 'eth0'],
    ]);
  });

  it('rejects what could not be a name, MTU or address', () => {
    const itf = { name: 'eth0', mac: 'aa:bb:cc:dd:ee:ff', mtu: 1500, addresses: ['10.0.0.2/24'] };
    expect(() => networkCommands([{ itf: { ...itf, name: 'eth0; reboot' }, dev: 'eth1' }], [])).toThrow(/interface name/);
    expect(() => networkCommands([{ itf: { ...itf, mtu: 20 }, dev: 'eth1' }], [])).toThrow(/MTU 20/);
    expect(() => networkCommands([{ itf: { ...itf, addresses: ['x'] }, dev: 'eth1' }], [])).toThrow(/address/);
  });
});
