// Runs guest-image/build.sh for real (Debian kernel package, busybox, host node,
// gcc, mkfs.erofs) into a temp OUT_ROOT: checks the outputs and the manifest,
// that an unchanged second run does not rebuild, that a changed agent gives a
// new hash directory, and that the image boots under QEMU (TCG) to the agent,
// which answers on the virtio-serial port, and powers off when the agent exits.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const buildSh = path.join(repo, 'guest-image/build.sh');
const repoLauncher = path.join(repo, 'guest-image/launcher/tern-launch.c');

interface BuildResult {
  dir: string;
  stderr: string;
}

function runBuild(env: Record<string, string>): Promise<BuildResult> {
  return new Promise((resolve, reject) => {
    execFile(buildSh, [], { env: { ...process.env, ...env }, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`build.sh failed: ${err.message}\n${stderr}`));
        return;
      }
      resolve({ dir: stdout.trim().split('\n').pop() ?? '', stderr });
    });
  });
}

const sha256 = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

// The agent used by the test: finds the port named tern.agent, says it is
// ready, then exits, which must power the VM off.
const agentSource = `// test agent
const fs = require("fs");
let dev = null;
for (const p of fs.readdirSync("/sys/class/virtio-ports")) {
  if (fs.readFileSync("/sys/class/virtio-ports/" + p + "/name", "utf8").trim() === "tern.agent") dev = "/dev/" + p;
}
console.log("test-agent: UV_THREADPOOL_SIZE=" + process.env.UV_THREADPOOL_SIZE + " erofs=" +
  fs.readFileSync("/proc/mounts", "utf8").split("\\n").some((l) => / \\/opt\\/tern erofs ro/.test(l)) +
  " execArgv=" + JSON.stringify(process.execArgv));
fs.writeFileSync(dev, "agent-ready\\n");
process.exit(3);
`;

describe('guest-image/build.sh', () => {
  let tmp = '';
  let outRoot = '';
  let agent = '';
  let launcher = '';
  let first: BuildResult | undefined;
  let qemu: ChildProcess | undefined;

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-guest-image-'));
    outRoot = path.join(tmp, 'out');
    agent = path.join(tmp, 'agent.js');
    fs.writeFileSync(agent, agentSource);
    launcher = repoLauncher;
    if (!fs.existsSync(launcher)) {
      // Until the launcher source lands, build with a minimal stand-in.
      launcher = path.join(tmp, 'tern-launch.c');
      fs.writeFileSync(launcher, '/* stand-in launcher */\nint main(void) { return 0; }\n');
    }
  });

  afterAll(() => {
    if (qemu?.pid !== undefined && qemu.exitCode === null && qemu.signalCode === null) {
      process.kill(qemu.pid, 'SIGKILL');
    }
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const env = (): Record<string, string> => ({ AGENT_JS: agent, OUT_ROOT: outRoot, LAUNCHER_SRC: launcher });

  it('builds kernel, initramfs, erofs image and manifest into OUT_ROOT/<hash>', async () => {
    first = await runBuild(env());
    const dir = first.dir;
    expect(path.dirname(dir)).toBe(outRoot);
    expect(path.basename(dir)).toMatch(/^[0-9a-f]{16}$/);
    expect(fs.readlinkSync(path.join(outRoot, 'current'))).toBe(path.basename(dir));

    // vmlinuz is a bzImage ("HdrS" at 0x202).
    const kernel = fs.readFileSync(path.join(dir, 'vmlinuz'));
    expect(kernel.subarray(0x202, 0x206).toString('latin1')).toBe('HdrS');
    // vmlinux is the same kernel uncompressed: an ELF that QEMU boots through its PVH entry.
    const fd = fs.openSync(path.join(dir, 'vmlinux'), 'r');
    const elf = Buffer.alloc(4);
    fs.readSync(fd, elf, 0, 4, 0);
    fs.closeSync(fd);
    expect(elf.toString('latin1')).toBe('\x7fELF');
    // initrd.img is an uncompressed newc cpio holding /init and the modules.
    const initrd = fs.readFileSync(path.join(dir, 'initrd.img'));
    expect(initrd.subarray(0, 6).toString('latin1')).toBe('070701');
    for (const name of ['init', 'bin/busybox', 'lib/modules/tern/erofs.ko', 'lib/modules/tern/load-order']) {
      expect(initrd.includes(Buffer.from(`${name}\0`))).toBe(true);
    }
    // guest.erofs carries the erofs superblock magic at 1024.
    const erofs = fs.readFileSync(path.join(dir, 'guest.erofs'));
    expect(erofs.readUInt32LE(1024)).toBe(0xe0f5e1e2);
    expect(erofs.length).toBeGreaterThan(fs.statSync('/usr/bin/node').size);

    const m = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    expect(m.hash).toBe(path.basename(dir));
    expect(m.kernel.package).toMatch(/^linux-image-\d.*-amd64$/);
    expect(m.inputs.kernel).toBe(`${m.kernel.package} ${m.kernel.version}`);
    expect(m.inputs.agent).toBe(sha256(agent));
    expect(m.inputs['tern-launch.c']).toBe(sha256(launcher));
    expect(m.inputs['tern-init.c']).toBe(sha256(path.join(repo, 'guest-image/init/tern-init.c')));
    expect(m.inputs['init.sh']).toBe(sha256(path.join(repo, 'guest-image/init/init.sh')));
    expect(m.inputs['build.sh']).toBe(sha256(buildSh));
    expect(m.inputs.node).toBe(sha256(fs.realpathSync('/usr/bin/node')));
    expect(m.inputs['busybox-static']).toBeTruthy();
    const order: string[] = m.modules.loadOrder;
    for (const [before, after] of [
      ['virtio_ring', 'virtio'],
      ['virtio', 'virtio_pci'],
      ['virtio_pci_modern_dev', 'virtio_pci'],
      ['libcrc32c', 'erofs'],
    ]) {
      expect(order.indexOf(before)).toBeGreaterThanOrEqual(0);
      expect(order.indexOf(before)).toBeLessThan(order.indexOf(after));
    }
    expect(order).toEqual(expect.arrayContaining(['virtio_blk', 'virtio_console', 'overlay', 'virtio_net']));
    // The generic kernel has 9p for the shared directory: the chain loads in order.
    expect(m.modules.missingOptional).toEqual([]);
    for (const [before, after] of [
      ['9pnet', '9pnet_virtio'],
      ['9pnet_virtio', '9p'],
      ['netfs', '9p'],
      ['fscache', '9p'],
    ]) {
      expect(order.indexOf(before)).toBeGreaterThanOrEqual(0);
      expect(order.indexOf(before)).toBeLessThan(order.indexOf(after));
    }
  }, 240_000);

  it('does not rebuild when nothing changed', async () => {
    expect(first).toBeDefined();
    const before = fs.statSync(path.join(first!.dir, 'manifest.json'));
    const again = await runBuild(env());
    expect(again.dir).toBe(first!.dir);
    expect(again.stderr).toContain('up to date');
    const after = fs.statSync(path.join(first!.dir, 'manifest.json'));
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(after.ino).toBe(before.ino);
  }, 120_000);

  /** Boots the built image with the test agent; its console, whether it said it was ready, and how QEMU ended. */
  const boot = async (params: string): Promise<{ ready: boolean; code: number | null; consoleText: string; context: string }> => {
    const dir = first!.dir;
    const sock = path.join(tmp, 'agent.sock');
    const consoleLog = path.join(tmp, 'console.log');
    fs.rmSync(sock, { force: true });
    fs.rmSync(consoleLog, { force: true });
    // prettier-ignore
    const args = [
      '-machine',
      'q35',
      '-accel',
      'tcg,thread=multi',
      '-cpu',
      'max',
      '-smp',
      '1',
      '-m',
      '512',
      '-nodefaults',
      '-nographic',
      '-no-user-config',
      '-display',
      'none',
      '-no-reboot',
      '-kernel',
      path.join(dir, 'vmlinuz'),
      '-initrd',
      path.join(dir, 'initrd.img'),
      '-append',
      `console=ttyS0 quiet panic=-1${params}`,
      '-serial',
      `file:${consoleLog}`,
      '-drive',
      `file=${path.join(dir, 'guest.erofs')},if=none,id=g,format=raw,readonly=on`,
      '-device',
      'virtio-blk-pci,drive=g,serial=tern-guest',
      '-device',
      'virtio-serial-pci',
      '-chardev',
      `socket,id=agent,path=${sock},server=on,wait=off`,
      '-device',
      'virtserialport,chardev=agent,name=tern.agent',
    ];
    const started = Date.now();
    const proc = spawn('/usr/bin/qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    qemu = proc;
    let qemuStderr = '';
    proc.stderr?.on('data', (d: Buffer) => (qemuStderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));

    const deadline = started + 90_000;
    const ready = await new Promise<boolean>((resolve) => {
      let received = '';
      let done = false;
      const finish = (ok: boolean): void => {
        if (!done) {
          done = true;
          resolve(ok);
        }
      };
      const attempt = (): void => {
        if (done) return;
        if (Date.now() > deadline || proc.exitCode !== null) {
          finish(false);
          return;
        }
        const c = net.connect(sock);
        c.on('data', (d) => {
          received += d.toString();
          if (received.includes('agent-ready\n')) {
            c.destroy();
            finish(true);
          }
        });
        c.on('error', () => undefined); // "close" follows and retries
        c.on('close', () => {
          if (!done) setTimeout(attempt, 50);
        });
      };
      attempt();
    });
    const readyAfter = (Date.now() - started) / 1000;

    const timer = setTimeout(() => proc.kill('SIGKILL'), Math.max(1_000, deadline - Date.now()));
    const code = await exited;
    clearTimeout(timer);
    const consoleText = fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, 'utf8') : '';
    const context = `ready after ${readyAfter}s\nqemu stderr: ${qemuStderr}\nconsole:\n${consoleText}`;
    return { ready, code, consoleText, context };
  };

  it('boots to the agent under QEMU and powers off when the agent exits; the agent runs --jitless, without V8 memory reducer', async () => {
    expect(first).toBeDefined();
    const { ready, code, consoleText, context } = await boot('');
    expect(ready, context).toBe(true);
    expect(code, context).toBe(0); // powered off by tern-init, not killed
    expect(consoleText).toContain('test-agent: UV_THREADPOOL_SIZE=8 erofs=true execArgv=["--no-memory-reducer","--jitless"]');
    expect(consoleText).toContain('exited with status 3; powering off');
  }, 120_000);

  it('lets the agent compile when the kernel command line says tern.agent_jit=1', async () => {
    expect(first).toBeDefined();
    const { ready, code, consoleText, context } = await boot(' tern.agent_jit=1');
    expect(ready, context).toBe(true);
    expect(code, context).toBe(0);
    expect(consoleText, context).toContain('test-agent: UV_THREADPOOL_SIZE=8 erofs=true execArgv=["--no-memory-reducer"]');
  }, 120_000);

  it('compiles the agent eagerly in a template (--no-lazy) and adds the V8 flags of tern.agent_v8', async () => {
    expect(first).toBeDefined();
    const { ready, code, consoleText, context } = await boot(' tern.template=1 tern.agent_v8=--no-flush-bytecode,--stack-size=900');
    expect(ready, context).toBe(true);
    expect(code, context).toBe(0);
    expect(consoleText, context).toContain(
      'test-agent: UV_THREADPOOL_SIZE=8 erofs=true execArgv=["--no-memory-reducer","--jitless","--no-lazy","--expose-gc","--no-flush-bytecode","--stack-size=900"]',
    );
  }, 120_000);

  it('builds a new hash directory when the agent changes', async () => {
    expect(first).toBeDefined();
    fs.appendFileSync(agent, '// changed\n');
    const next = await runBuild(env());
    expect(next.dir).not.toBe(first!.dir);
    expect(path.dirname(next.dir)).toBe(outRoot);
    expect(fs.readlinkSync(path.join(outRoot, 'current'))).toBe(path.basename(next.dir));
    expect(fs.existsSync(path.join(first!.dir, 'manifest.json'))).toBe(true);
    const m = JSON.parse(fs.readFileSync(path.join(next.dir, 'manifest.json'), 'utf8'));
    expect(m.inputs.agent).toBe(sha256(agent));
    expect(fs.readdirSync(outRoot).filter((n) => n.startsWith('.build'))).toEqual([]);
  }, 240_000);
});
