import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stateFileError, writeStateFile } from '../../../src/shim/state-file';
import { TernError } from '../../../src/common/errors';

describe('state files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tern-state-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a full disk is ResourceExhausted naming the file and the setting', () => {
    const err = stateFileError('write', '/run/tern/sb/x/sandbox.json', Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }));
    expect(err).toBeInstanceOf(TernError);
    expect(err.code).toBe('ResourceExhausted');
    expect(err.message).toBe("write /run/tern/sb/x/sandbox.json: no space left on device (tern's state directory, runtime.state_dir, is full)");
  });

  it('other failures are Internal and name the file', async () => {
    const missing = join(dir, 'no-such-dir', 'sandbox.json');
    const err = await writeStateFile(missing, '{}').then(
      () => undefined,
      (e: TernError) => e,
    );
    expect(err?.code).toBe('Internal');
    expect(err?.message).toMatch(new RegExp(`^write ${missing}: ENOENT`));
  });
});
