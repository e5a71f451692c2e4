// `tern pool`: its command line, its refusal to serve with the pool off, and
// the status view (the live pool is exercised in test/integration/pool.test.ts).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parsePoolArgs, poolCommand, renderPoolStatus } from '../../../src/cli/pool-command';
import { bufferIo, UsageError } from '../../../src/cli/io';

describe('tern pool', () => {
  it('takes serve or status, and nothing else', () => {
    expect(parsePoolArgs(['status', '--json'])).toEqual({ help: false, sub: 'status', json: true, config: undefined });
    expect(parsePoolArgs(['serve', '-c', '/x.toml'])).toEqual({ help: false, sub: 'serve', json: false, config: '/x.toml' });
    expect(() => parsePoolArgs([])).toThrow(UsageError);
    expect(() => parsePoolArgs(['drain'])).toThrow(/unknown pool subcommand "drain"/);
  });

  it('refuses to serve when pool.size is 0, saying how to turn it on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tern-pool-cli-'));
    try {
      writeFileSync(join(dir, 'c.toml'), '[pool]\nsize = 0\n');
      const io = bufferIo();
      expect(await poolCommand(['serve', '--config', join(dir, 'c.toml')], io)).toBe(1);
      expect(io.stderr).toMatch(/pool\.size is 0: the warm pool is off \(set \[pool\] size/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('status names the pool, its VMs and its last failure', () => {
    const text = renderPoolStatus({
      ok: true,
      pid: 42,
      size: 2,
      key: '0123456789abcdef01234567',
      ready: [{ name: 'vm-0123456789ab', pid: 77, idleMs: 1500 }],
      starting: 1,
      served: 5,
      missed: 1,
      failures: 1,
      lastFailure: 'pooled VM vm-x exited while idle (exit 1)',
    });
    expect(text).toBe(
      [
        'pool pid 42: 1/2 ready, 1 starting; served 5, missed 1, failures 1',
        'template key: 0123456789abcdef01234567',
        'last failure: pooled VM vm-x exited while idle (exit 1)',
        '  vm-0123456789ab  qemu pid 77  idle 1.5 s',
        '',
      ].join('\n'),
    );
  });
});
