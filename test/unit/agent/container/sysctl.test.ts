import { describe, expect, it } from 'vitest';
import { checkSysctl } from '../../../../src/agent/container/sysctl';
import { TernError } from '../../../../src/common/errors';

const both = { ipc: true, uts: true };

describe('checkSysctl', () => {
  it('allows IPC, mqueue, UTS and net keys in their namespaces, with / or . separators', () => {
    expect(checkSysctl('kernel.shmmax', both)).toBe('kernel/shmmax');
    expect(checkSysctl('kernel/msgmnb', both)).toBe('kernel/msgmnb');
    expect(checkSysctl('fs.mqueue.msg_max', both)).toBe('fs/mqueue/msg_max');
    expect(checkSysctl('kernel.domainname', both)).toBe('kernel/domainname');
    expect(checkSysctl('net.ipv4.ip_forward', { ipc: false, uts: false })).toBe('net/ipv4/ip_forward');
  });

  it('refuses keys global to the guest kernel, naming the key', () => {
    for (const key of ['vm.swappiness', 'kernel.pid_max', 'fs.file-max', 'kernel.panic']) {
      expect(() => checkSysctl(key, both)).toThrowError(new RegExp(`linux\\.sysctl: ${key.replace('.', '\\.')} is not in a separate kernel namespace`));
    }
  });

  it("refuses IPC and UTS keys without the namespace of the container's own", () => {
    expect(() => checkSysctl('kernel.shmmni', { ipc: false, uts: true })).toThrowError(/kernel\.shmmni needs an ipc namespace/);
    expect(() => checkSysctl('fs.mqueue.queues_max', { ipc: false, uts: true })).toThrowError(/needs an ipc namespace/);
    expect(() => checkSysctl('kernel.hostname', { ipc: true, uts: false })).toThrowError(/kernel\.hostname needs a uts namespace/);
  });

  it('refuses malformed keys as InvalidArgument', () => {
    for (const key of ['net..ipv4', 'net/../../etc', 'kernel.shm max', '']) {
      let err: unknown;
      try {
        checkSysctl(key, both);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TernError);
      expect((err as TernError).code).toBe('InvalidArgument');
    }
  });
});
