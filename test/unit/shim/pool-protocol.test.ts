// The warm pool's wire checks: what the pool accepts from a shim, what a shim
// accepts from the pool (a reply pointing outside the pool directory is
// refused), and how owner records map pooled VMs to sandbox directories.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { isPooledName, parseRequest, parseTakeReply, pooledDirsOwnedBy, pooledPaths, readOwner } from '../../../src/shim/pool/protocol';

const KEY = '0123456789abcdef01234567';

describe('pool requests', () => {
  it('accepts status and a well-formed take', () => {
    expect(parseRequest('{"op":"status"}')).toEqual({ op: 'status' });
    expect(parseRequest(JSON.stringify({ op: 'take', key: KEY, sandboxId: 'pod-1', owner: '/run/tern/sb/ns-pod-1' }))).toEqual({
      op: 'take',
      key: KEY,
      sandboxId: 'pod-1',
      owner: '/run/tern/sb/ns-pod-1',
    });
  });

  it('refuses anything else, naming what is wrong', () => {
    const take = { op: 'take', key: KEY, sandboxId: 'pod-1', owner: '/run/tern/sb/x' };
    const bad: Array<[string, RegExp]> = [
      ['[]', /not an object/],
      ['{"op":"give"}', /unknown op "give"/],
      [JSON.stringify({ ...take, key: 'ZZ' }), /bad key/],
      [JSON.stringify({ ...take, sandboxId: '' }), /bad sandboxId/],
      [JSON.stringify({ ...take, owner: 'relative/dir' }), /bad owner/],
      [JSON.stringify({ ...take, owner: '/run/tern/../etc' }), /bad owner/],
    ];
    for (const [line, re] of bad) expect(() => parseRequest(line)).toThrow(re);
    expect(() => parseRequest('{not json')).toThrow(SyntaxError);
  });
});

describe('pool replies', () => {
  const poolDir = '/run/tern/pool';
  it('takes a grant for a VM directory inside the pool directory', () => {
    const r = parseTakeReply(JSON.stringify({ ok: true, dir: '/run/tern/pool/vm-0123456789ab', name: 'vm-0123456789ab', pid: 4242, idleMs: 12 }), poolDir);
    expect(r).toEqual({ ok: true, dir: '/run/tern/pool/vm-0123456789ab', name: 'vm-0123456789ab', pid: 4242, idleMs: 12 });
    expect(parseTakeReply('{"ok":false,"reason":"no ready VM"}', poolDir)).toEqual({ ok: false, reason: 'no ready VM' });
  });

  it('refuses a grant pointing elsewhere, or with a bad name or pid', () => {
    const grant = { ok: true, dir: '/run/tern/pool/vm-0123456789ab', name: 'vm-0123456789ab', pid: 4242 };
    expect(() => parseTakeReply(JSON.stringify({ ...grant, dir: '/etc' }), poolDir)).toThrow(/not under \/run\/tern\/pool/);
    expect(() => parseTakeReply(JSON.stringify({ ...grant, name: '../x', dir: '/run/tern/x' }), poolDir)).toThrow(/bad VM name/);
    expect(() => parseTakeReply(JSON.stringify({ ...grant, pid: 1 }), poolDir)).toThrow(/bad pid/);
    expect(isPooledName('vm-0123456789ab')).toBe(true);
    expect(isPooledName('vm-0123456789ab/..')).toBe(false);
  });
});

describe('owner records', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the pooled VMs a sandbox directory owns, and only those', () => {
    dir = mkdtempSync(join(tmpdir(), 'tern-pool-'));
    const own = (name: string, owner?: string) => {
      mkdirSync(join(dir, name));
      if (owner) writeFileSync(pooledPaths(join(dir, name)).ownerFile, JSON.stringify({ owner, sandboxId: 's', takenAt: 'now' }));
    };
    own('vm-000000000001', '/run/tern/sb/a');
    own('vm-000000000002', '/run/tern/sb/b');
    own('vm-000000000003');
    mkdirSync(join(dir, 'vm-000000000004'));
    writeFileSync(join(dir, 'vm-000000000004', 'owner.json'), '{"owner": 5}');
    expect(pooledDirsOwnedBy(dir, '/run/tern/sb/a')).toEqual([join(dir, 'vm-000000000001')]);
    expect(readOwner(join(dir, 'vm-000000000003'))).toBeUndefined();
    expect(readOwner(join(dir, 'vm-000000000004'))).toBeUndefined();
    expect(pooledDirsOwnedBy(join(dir, 'missing'), '/run/tern/sb/a')).toEqual([]);
  });
});
