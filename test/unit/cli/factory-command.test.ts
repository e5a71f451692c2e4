// `tern factory`: argument parsing, status over a template store made for the
// test on /dev/shm (text and JSON), destroy, and init's logic with a stand-in
// factory. No VM is booted: init is only run where it fails before one would be.
import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig, type TernConfig } from '../../../src/common/config';
import { silentLogger } from '../../../src/common/logging';
import { parseFactoryArgs } from '../../../src/cli/factory-command';
import { factoryStatus, initTemplate, renderFactoryStatus, renderInit, type TemplateSource } from '../../../src/cli/factory-view';
import { bufferIo, UsageError } from '../../../src/cli/io';
import { runCli } from '../../../src/cli/run';
import { MAIN_USAGE } from '../../../src/cli/usage';
import { TemplateStore } from '../../../src/shim/templates/store';
import { buildFiles, MiB, TMPFS_MAGIC, touchMemory, writeTemplate } from '../shim/template-fixtures';

const READY = 'a1b2c3d4e5f60718293a4b5c';
const BROKEN = 'ffffffffffffffffffffffff';
const FAILED = '0123456789abcdef01234567';

let tmp: string;
let storeDir: string;
let configFile: string;

async function tern(...argv: string[]) {
  const io = bufferIo();
  const code = await runCli(argv, io);
  return { code, stdout: io.stdout, stderr: io.stderr };
}

function writeConfig(name: string, body: string): string {
  const file = join(tmp, name);
  fs.writeFileSync(file, `[runtime]\nlog_level = "error"\n\n${body}`);
  return file;
}

/** The store: one ready template (1 MiB of its 16 MiB written), one invalid, one failed build. */
function fillStore(): void {
  const store = new TemplateStore(storeDir, silentLogger);
  writeTemplate(storeDir, READY, 16);
  touchMemory(storeDir, READY, MiB);
  writeTemplate(storeDir, BROKEN, 16);
  fs.appendFileSync(join(storeDir, BROKEN, 'state'), 'x');
  store.markFailed(FAILED, 'qemu exited during boot');
}

beforeAll(() => {
  // Were /dev/shm not a tmpfs, a store there would mount one: refuse to run instead.
  expect(fs.statfsSync('/dev/shm').type).toBe(TMPFS_MAGIC);
});
beforeEach(() => {
  tmp = fs.mkdtempSync('/dev/shm/tern-unit-factory-');
  storeDir = join(tmp, 'templates');
  configFile = writeConfig('config.toml', `[factory]\ntemplate_dir = ${JSON.stringify(storeDir)}\n`);
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('arguments', () => {
  it('parses the subcommand, --json and --config', () => {
    expect(parseFactoryArgs(['status'])).toEqual({ help: false, sub: 'status', json: false, config: undefined });
    expect(parseFactoryArgs(['init', '--json', '-c', '/etc/x.toml'])).toEqual({ help: false, sub: 'init', json: true, config: '/etc/x.toml' });
    expect(parseFactoryArgs(['--config=/c', 'destroy'])).toEqual({ help: false, sub: 'destroy', json: false, config: '/c' });
    expect(parseFactoryArgs(['-h'])).toEqual({ help: true });
    expect(parseFactoryArgs(['bogus', '--help'])).toEqual({ help: true });
  });

  it.each([[[]], [['bogus']], [['status', 'extra']], [['status', '--bogus']], [['init', '--config']], [['destroy', '-n', 'x']]])(
    'rejects %j as a usage error',
    (argv) => {
      expect(() => parseFactoryArgs(argv)).toThrow(UsageError);
    },
  );

  it.each([[['factory']], [['factory', 'frobnicate']], [['factory', 'status', 'now']], [['factory', 'init', '--bogus']]])(
    'tern %j exits 2 with the factory usage on stderr',
    async (argv) => {
      const r = await tern(...argv);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^tern: /);
      expect(r.stderr).toContain('Usage: tern factory status');
    },
  );

  it('prints help on stdout, and the main usage names the subcommands', async () => {
    for (const argv of [
      ['factory', '--help'],
      ['help', 'factory'],
      ['factory', 'destroy', '-h'],
    ]) {
      const r = await tern(...argv);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: tern factory status/);
    }
    expect(MAIN_USAGE).toMatch(/factory status \[--json\]/);
    expect(MAIN_USAGE).toMatch(/factory init \[--json\]/);
    expect(MAIN_USAGE).toMatch(/factory destroy/);
  });

  it('exits 1 when the config cannot be read', async () => {
    const r = await tern('factory', 'status', '-c', join(tmp, 'absent.toml'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tern factory: cannot read tern config/);
  });
});

describe('status', () => {
  it('lists each template with its state, memory and detail, and says templates are enabled', async () => {
    fillStore();
    const r = await tern('factory', 'status', '--config', configFile);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 3)).toEqual(['templates: enabled (factory.template = true)', `store:     ${storeDir}`, '']);
    expect(lines[3]).toMatch(/^KEY +STATE +MEMORY +USED +DETAIL$/);
    expect(lines[4]).toMatch(new RegExp(`^${FAILED} +failed +- +- +qemu exited during boot$`));
    expect(lines[5]).toMatch(new RegExp(`^${READY} +ready +16 MiB +1 MiB +built 2026-01-02T03:04:05.000Z in 1234 ms$`));
    expect(lines[6]).toMatch(new RegExp(`^${BROKEN} +invalid +- +- +state file is 4097 bytes, want 4096$`));
    expect(lines.slice(7)).toEqual(['']);
    // Columns line up: every row's STATE starts where the header's does.
    const col = lines[3]!.indexOf('STATE');
    for (const l of lines.slice(4, 7)) expect(l.slice(col)).toMatch(/^(ready|invalid|failed) /);
  });

  it('--json gives the same entries as data', async () => {
    fillStore();
    const r = await tern('factory', 'status', '--json', '-c', configFile);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.stdout);
    expect(v).toEqual({
      enabled: true,
      dir: storeDir,
      templates: [
        { key: FAILED, state: 'failed', detail: 'qemu exited during boot', memoryMiB: null, memoryUsedMiB: null, createdAt: null, buildMs: null },
        {
          key: READY,
          state: 'ready',
          detail: 'built 2026-01-02T03:04:05.000Z in 1234 ms',
          memoryMiB: 16,
          memoryUsedMiB: 1,
          createdAt: '2026-01-02T03:04:05.000Z',
          buildMs: 1234,
        },
        { key: BROKEN, state: 'invalid', detail: 'state file is 4097 bytes, want 4096', memoryMiB: null, memoryUsedMiB: null, createdAt: null, buildMs: null },
      ],
    });
  });

  it('says when templates are disabled and the store is empty or absent', async () => {
    const off = writeConfig('off.toml', `[factory]\ntemplate = false\ntemplate_dir = ${JSON.stringify(storeDir)}\n`);
    const r = await tern('factory', 'status', '-c', off);
    expect(r).toEqual({ code: 0, stdout: `templates: disabled (factory.template = false)\nstore:     ${storeDir}\nno templates\n`, stderr: '' });
    expect(JSON.parse((await tern('factory', 'status', '--json', '-c', off)).stdout)).toEqual({ enabled: false, dir: storeDir, templates: [] });
    expect(fs.existsSync(storeDir)).toBe(false);
  });

  it('marks a failure older than the retry delay as expired', () => {
    const cfg: TernConfig = defaultConfig();
    const store = new TemplateStore(storeDir, silentLogger);
    fs.mkdirSync(storeDir);
    store.markFailed(FAILED, 'boom');
    const fresh = factoryStatus(cfg, store);
    expect(fresh.templates[0]!.detail).toBe('boom');
    const later = factoryStatus(cfg, store, Date.now() + 24 * 3600_000);
    expect(later.templates[0]!.detail).toBe('boom (expired: the next start retries)');
    expect(renderFactoryStatus(later)).toContain('boom (expired: the next start retries)\n');
  });
});

describe('destroy', () => {
  it('removes every template and the store directory', async () => {
    fillStore();
    const r = await tern('factory', 'destroy', '-c', configFile);
    expect(r).toEqual({ code: 0, stdout: `removed 2 template(s) and the store ${storeDir}\n`, stderr: '' });
    expect(fs.existsSync(storeDir)).toBe(false);
    expect(fs.existsSync(`${storeDir}.lock`)).toBe(false);
    const again = await tern('factory', 'destroy', '--json', '-c', configFile);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ destroyed: true, dir: storeDir, templates: 0 });
  });
});

describe('init', () => {
  it('exits 1 naming what is missing when the template cannot be keyed (no VM is started)', async () => {
    const qemu = join(tmp, 'fake-qemu');
    fs.writeFileSync(qemu, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const kernel = join(tmp, 'no-vmlinux');
    const cfg = writeConfig(
      'init.toml',
      `[hypervisor]\nbinary = ${JSON.stringify(qemu)}\nkernel = ${JSON.stringify(kernel)}\n\n[factory]\ntemplate_dir = ${JSON.stringify(storeDir)}\n`,
    );
    const r = await tern('factory', 'init', '-c', cfg);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^tern factory init: template key: kernel ${kernel}: `));
    expect(fs.existsSync(storeDir)).toBe(false);
  });

  it('reports a template it built, then the same one as present', async () => {
    const cfg = defaultConfig();
    cfg.hypervisor.vcpus = 2;
    cfg.hypervisor.memoryMiB = 16;
    cfg.factory.template = false;
    const store = new TemplateStore(storeDir, silentLogger);
    const shapes: unknown[] = [];
    let builds = 0;
    const source: TemplateSource = {
      store,
      keyOf: () => READY,
      template: (shape) => {
        shapes.push(shape);
        return store.ensure(
          READY,
          shape.memoryMiB,
          async (dir) => {
            builds++;
            buildFiles(dir, shape.memoryMiB);
            return { memoryMiB: shape.memoryMiB, buildMs: 0, shape };
          },
          5000,
        );
      },
    };
    const first = await initTemplate(cfg, source);
    expect(first).toMatchObject({ key: READY, outcome: 'built', vcpus: 2, memoryMiB: 16, dir: join(storeDir, READY), enabled: false });
    expect(shapes[0]).toMatchObject({ vcpus: 2, memoryMiB: 16, kernel: cfg.hypervisor.kernel });
    const second = await initTemplate(cfg, source);
    expect(builds).toBe(1);
    expect(second).toMatchObject({ key: READY, outcome: 'present', createdAt: first.createdAt, buildMs: first.buildMs });

    const text = renderInit({ ...second, buildMs: 9876 });
    expect(text).toContain(`template ${READY}: already present (2 vCPU, 16 MiB)\n`);
    expect(text).toContain('build time: 9.9 s\n');
    expect(text).toContain('note: factory.template = false');
    expect(renderInit({ ...first, enabled: true })).toMatch(new RegExp(`^template ${READY}: built \\(2 vCPU, 16 MiB\\)\\n`));
    expect(renderInit({ ...first, enabled: true })).not.toContain('note:');
  });
});
