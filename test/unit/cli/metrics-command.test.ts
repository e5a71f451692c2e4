// `tern metrics`: its command line (serve only; --listen parsed, a
// non-loopback address a usage error with exit 2), its help, its default
// socket in the state directory.
import { describe, expect, it } from 'vitest';
import { bufferIo, UsageError } from '../../../src/cli/io';
import { defaultListen, parseMetricsArgs } from '../../../src/cli/metrics-command';
import { runCli } from '../../../src/cli/run';
import { defaultConfig } from '../../../src/common/config';

const tern = async (...argv: string[]) => {
  const io = bufferIo();
  return { code: await runCli(argv, io), stdout: io.stdout, stderr: io.stderr };
};

describe('tern metrics', () => {
  it('takes serve with --listen and --config', () => {
    expect(parseMetricsArgs(['serve'])).toEqual({ help: false, listen: undefined, config: undefined });
    expect(parseMetricsArgs(['serve', '--listen', 'unix:/run/m.sock', '-c', '/x.toml'])).toEqual({
      help: false,
      listen: { kind: 'unix', path: '/run/m.sock' },
      config: '/x.toml',
    });
    expect(parseMetricsArgs(['serve', '--listen=127.0.0.1:9464'])).toMatchObject({ listen: { kind: 'tcp', host: '127.0.0.1', port: 9464 } });
    expect(() => parseMetricsArgs([])).toThrow(UsageError);
    expect(() => parseMetricsArgs(['show'])).toThrow(/unknown metrics subcommand "show"/);
    expect(() => parseMetricsArgs(['serve', '--port', '1'])).toThrow(UsageError);
  });

  it('refuses a non-loopback --listen as a usage error (exit 2), saying why', async () => {
    const r = await tern('metrics', 'serve', '--listen', '0.0.0.0:9464');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^tern: --listen "0\.0\.0\.0:9464": 0\.0\.0\.0 is not a loopback address/);
    expect(r.stderr).toContain('Usage: tern metrics serve');
    expect(r.stdout).toBe('');
  });

  it('has help, and is in the main usage', async () => {
    const h = await tern('metrics', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: tern metrics serve \[--listen ADDR\]/);
    expect((await tern('help', 'metrics')).stdout).toBe(h.stdout);
    expect((await tern('--help')).stdout).toMatch(/^ {2}metrics serve \[--listen ADDR\] /m);
  });

  it('listens by default on metrics.sock in the state directory', () => {
    expect(defaultListen(defaultConfig())).toEqual({ kind: 'unix', path: '/run/tern/metrics.sock' });
  });
});
