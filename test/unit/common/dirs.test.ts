import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureDir } from '../../../src/common/dirs';
import { TernError } from '../../../src/common/errors';

describe('ensureDir', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'tern-dirs-'));
  });
  afterEach(() => rmSync(tmp, { recursive: true, force: true }));

  it('makes a missing directory and its parents, the leaf with exactly the mode asked', () => {
    const dir = join(tmp, 'a', 'b', 's');
    const old = process.umask(0o077);
    try {
      ensureDir(dir, 0o711, 'test');
    } finally {
      process.umask(old);
    }
    expect(statSync(dir).mode & 0o777).toBe(0o711);
  });

  it('leaves an existing directory and its mode alone', () => {
    const dir = join(tmp, 'kept');
    ensureDir(dir, 0o700, 'test');
    chmodSync(dir, 0o755);
    ensureDir(dir, 0o700, 'test');
    expect(statSync(dir).mode & 0o777).toBe(0o755);
  });

  it('fails with FailedPrecondition naming the directory and its purpose', () => {
    const dir = join(tmp, 's');
    writeFileSync(dir, '');
    let err: unknown;
    try {
      ensureDir(dir, 0o700, 'shim socket');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('FailedPrecondition');
    expect((err as Error).message).toContain(`cannot create shim socket directory ${dir}: EEXIST`);
  });
});
