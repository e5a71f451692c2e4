// hypervisor.run_as: its syntax is checked with the config, and it resolves
// to numeric ids from a passwd file, with errors that name the setting.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/common/config';
import { resolveRunAs } from '../../../src/common/run-as';

const dir = mkdtempSync(join(tmpdir(), 'tern-run-as-'));
const passwd = join(dir, 'passwd');
writeFileSync(
  passwd,
  [
    'root:x:0:0:root:/root:/bin/bash',
    'tern-qemu:x:998:997::/nonexistent:/usr/sbin/nologin',
    'odd:x:abc:1::/:/bin/false',
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
    '',
  ].join('\n'),
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('resolveRunAs', () => {
  it('is undefined when empty: QEMU stays root', () => {
    expect(resolveRunAs('', passwd)).toBeUndefined();
  });

  it('takes a user name to its uid and primary group', () => {
    expect(resolveRunAs('tern-qemu', passwd)).toEqual({ uid: 998, gid: 997 });
    expect(resolveRunAs('nobody', passwd)).toEqual({ uid: 65534, gid: 65534 });
  });

  it('takes numeric uid:gid as given, without the passwd file', () => {
    expect(resolveRunAs('1234:5678', join(dir, 'absent'))).toEqual({ uid: 1234, gid: 5678 });
  });

  it('names a missing user and how to create it', () => {
    expect(() => resolveRunAs('qemu-user', passwd)).toThrow(
      expect.objectContaining({
        code: 'FailedPrecondition',
        message: expect.stringMatching(/hypervisor\.run_as "qemu-user": no such user in .*passwd \(create it, e\.g\. useradd --system/),
      }),
    );
  });

  it('refuses root, by name or by number', () => {
    expect(() => resolveRunAs('root', passwd)).toThrow(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('is root (uid 0)') }),
    );
    expect(() => resolveRunAs('0:0', passwd)).toThrow(expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining('uid 0 is root') }));
  });

  it('refuses a passwd line without numeric ids', () => {
    expect(() => resolveRunAs('odd', passwd)).toThrow(
      expect.objectContaining({ code: 'FailedPrecondition', message: expect.stringContaining('no numeric ids') }),
    );
  });
});

describe('hypervisor.run_as in the config', () => {
  it('defaults to empty', () => {
    expect(parseConfig('').hypervisor.runAs).toBe('');
  });

  it('accepts a name or uid:gid', () => {
    expect(parseConfig('[hypervisor]\nrun_as = "tern-qemu"').hypervisor.runAs).toBe('tern-qemu');
    expect(parseConfig('[hypervisor]\nrun_as = "998:997"').hypervisor.runAs).toBe('998:997');
  });

  it.each(['998:', 'a b', '-x', '12:ab', '0:0'])('refuses %j, naming the key', (v) => {
    expect(() => parseConfig(`[hypervisor]\nrun_as = ${JSON.stringify(v)}`, 'cfg.toml')).toThrow(
      expect.objectContaining({ code: 'InvalidArgument', message: expect.stringContaining(`cfg.toml: hypervisor.run_as ${JSON.stringify(v)}`) }),
    );
  });
});
