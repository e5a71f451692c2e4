import { describe, expect, it } from 'vitest';
import { forwardChanges, hostNicGuestConfig, hostNicMac } from '../../../src/shim/host-network';

describe('host networking', () => {
  it('makes locally administered unicast MACs', () => {
    expect(hostNicMac(Buffer.from([1, 2, 3, 0xab, 0xff]))).toBe('02:01:02:03:ab:ff');
    expect(hostNicMac()).toMatch(/^02(:[0-9a-f]{2}){5}$/);
  });

  it('configures the guest on the user-mode network with its default route', () => {
    expect(hostNicGuestConfig('02:00:00:00:00:01')).toEqual({
      interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:01', mtu: 1500, addresses: ['10.0.2.15/24'] }],
      routes: [{ dest: 'default', gateway: '10.0.2.2', device: 'eth0', scope: '' }],
    });
  });

  it('forwards new listeners and ends the forwards of those gone', () => {
    expect(forwardChanges(new Set(), [80, 443])).toEqual({ add: [80, 443], remove: [] });
    expect(forwardChanges(new Set([80, 443]), [443, 8080])).toEqual({ add: [8080], remove: [80] });
    expect(forwardChanges(new Set([80]), [])).toEqual({ add: [], remove: [80] });
  });
});
