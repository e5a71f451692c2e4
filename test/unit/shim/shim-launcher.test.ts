// The native launcher (helpers/tern-shim-launch.c), compiled here with a short
// deadline, beside stand-in shim.js scripts: `start` forks the daemon and
// prints its address once it says "ok <address>" (the daemon keeps running in
// a session of its own); "err ..." or silence is exit 1 with the cause on
// stderr; a daemon past the deadline is killed; any other action execs node
// with the same arguments, shown as containerd-shim-tern-v2 in ps; but
// `delete` prints the answer a clean exit left in the bundle, if there is one.
// Under a lock on its socket directory (here a test directory), `start` first
// asks the shim process already running for the same arguments and
// environment, on its control socket, and forks only when none answers.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { procAlive } from '../../../src/common/proc';
import { decode } from '../../../src/common/proto';
import { DELETE_ANSWER_FILE, goneDeleteResponse } from '../../../src/shim/delete';

let dir: string;
const bin = () => join(dir, 'containerd-shim-tern-v2');
const socketRoot = () => join(dir, 's');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-launcher-'));
  const root = `-DSOCKET_ROOT="${join(dir, 's')}"`;
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-DREADY_TIMEOUT_MS=500', root, '-o', bin(), join(__dirname, '../../../helpers/tern-shim-launch.c')]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the launcher with `script` as shim.js. */
function launch(script: string, args: string[]) {
  writeFileSync(join(dir, 'shim.js'), script);
  return spawnSync(bin(), args, { encoding: 'utf8', timeout: 10_000 });
}

const ARGS = ['-namespace', 'ns', '-address', '/run/c.sock', '-id', 'c1'];

describe('shim launcher', () => {
  it('start: the daemon runs `launch` in its own session; its address is printed and it goes on running', () => {
    const pidFile = join(dir, 'daemon.pid');
    const r = launch(
      `const fs = require('fs');
       fs.writeFileSync(${JSON.stringify(pidFile)}, JSON.stringify({ pid: process.pid, sid: fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[3], argv: process.argv.slice(2), argv0: process.argv0 }));
       fs.writeSync(3, 'ok unix:///run/containerd/s/abc\\n'); fs.closeSync(3);
       setTimeout(() => {}, 30000);`,
      [...ARGS, 'start'],
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('unix:///run/containerd/s/abc');
    const d = JSON.parse(readFileSync(pidFile, 'utf8')) as { pid: number; sid: string; argv: string[]; argv0: string };
    expect(d.argv).toEqual([...ARGS, 'launch']);
    expect(d.argv0).toBe('containerd-shim-tern-v2');
    expect(Number(d.sid)).toBe(d.pid);
    expect(procAlive(d.pid)).toBe(true);
    process.kill(d.pid, 'SIGKILL');
  });

  it("start: the daemon's error, or its silence, is exit 1 with the cause on stderr", () => {
    let r = launch(`require('fs').writeSync(3, 'err cannot listen on /run/containerd/s/abc: EACCES\\n')`, [...ARGS, 'start']);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('containerd-shim-tern-v2: cannot listen on /run/containerd/s/abc: EACCES\n');
    r = launch('process.exit(3)', [...ARGS, 'start']);
    expect(r.status).toBe(1);
    expect(r.stderr).toBe('containerd-shim-tern-v2: shim daemon failed to start: exited without a word\n');
  });

  it('start: a daemon silent past the deadline is killed and named', () => {
    const pidFile = join(dir, 'silent.pid');
    const r = launch(`require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000)`, [...ARGS, 'start']);
    expect(r.status).toBe(1);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(r.stderr).toBe(`containerd-shim-tern-v2: shim daemon (pid ${pid}) did not become ready within 500 ms; killed\n`);
    expect(procAlive(pid)).toBe(false);
  });

  it('any other action: node runs shim.js in place with the same arguments and stdio', () => {
    const r = launch(`process.stdout.write(JSON.stringify([process.argv0, ...process.argv.slice(2)])); process.exit(7)`, [...ARGS, 'delete']);
    expect(r.status).toBe(7);
    expect(JSON.parse(r.stdout)).toEqual(['containerd-shim-tern-v2', ...ARGS, 'delete']);
  });

  it('delete: the answer a clean exit left in the bundle is printed and removed, and node does not run', () => {
    const bundle = mkdtempSync(join(dir, 'bundle-'));
    const answer = Buffer.from(goneDeleteResponse());
    writeFileSync(join(bundle, DELETE_ANSWER_FILE), answer);
    const ran = join(dir, 'node-ran');
    const script = `require('fs').writeFileSync(${JSON.stringify(ran)}, 'yes'); process.stdout.write('from node')`;
    writeFileSync(join(dir, 'shim.js'), script);
    const r = spawnSync(bin(), [...ARGS, '-bundle', bundle, 'delete'], { timeout: 10_000 });
    expect(r.status).toBe(0);
    expect(Buffer.compare(r.stdout, answer)).toBe(0);
    const decoded = decode('containerd.task.v2.DeleteResponse', r.stdout) as { pid?: number; exit_status: number };
    expect(decoded.exit_status).toBe(137);
    expect(existsSync(join(bundle, DELETE_ANSWER_FILE))).toBe(false);
    expect(existsSync(ran)).toBe(false);
    // No answer left (a dead shim): node's delete runs, from the bundle as cwd too.
    const again = spawnSync(bin(), [...ARGS, 'delete'], { cwd: bundle, encoding: 'utf8', timeout: 10_000 });
    expect(again.stdout).toBe('from node');
    expect(readFileSync(ran, 'utf8')).toBe('yes');
  });
});

/** A stand-in shim that records the control socket it was given (and its argv), says ok, and exits. */
function recordingShim(out: string): string {
  return `const fs = require('fs');
    fs.writeFileSync(${JSON.stringify(out)}, JSON.stringify({ control: process.env.TERN_SHIM_CONTROL_SOCKET ?? null, argv: process.argv.slice(2) }));
    fs.writeSync(3, 'ok unix:///forked\\n'); fs.closeSync(3);`;
}

/** The launcher run without blocking this process (a server here answers it). */
function launchAsync(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(bin(), args, { encoding: 'utf8', timeout: 10_000, cwd: opts.cwd, env: opts.env ?? process.env }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

/** A running shim's control socket, answering each request with reply(request). */
async function controlServer(path: string, reply: (request: Buffer) => string | undefined): Promise<{ server: Server; requests: Buffer[] }> {
  const requests: Buffer[] = [];
  const server = createServer({ allowHalfOpen: true }, (conn) => {
    const chunks: Buffer[] = [];
    conn.on('data', (d: Buffer) => chunks.push(d));
    conn.on('end', () => {
      const req = Buffer.concat(chunks);
      requests.push(req);
      const word = reply(req);
      if (word === undefined) conn.destroy();
      else conn.end(word);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { server, requests };
}

describe('shim launcher: one shim process for many pods', () => {
  const env = { ...process.env, TERN_TEST_ENV: 'one' };

  /** The control socket the launcher names for these arguments and environment (found by a first, forking launch). */
  function controlFor(args: string[], e: NodeJS.ProcessEnv): string {
    const out = join(dir, 'recorded.json');
    writeFileSync(join(dir, 'shim.js'), recordingShim(out));
    const r = spawnSync(bin(), [...args, 'start'], { encoding: 'utf8', timeout: 10_000, env: e });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('unix:///forked');
    return (JSON.parse(readFileSync(out, 'utf8')) as { control: string }).control;
  }

  it('start: the shim running for the same arguments and environment answers; nothing is forked; it gets the cwd and the arguments', async () => {
    const control = controlFor(ARGS, env);
    expect(control).toMatch(new RegExp(`^${socketRoot()}/tern-[0-9a-f]{16}$`));
    expect(statSync(socketRoot()).mode & 0o777).toBe(0o700);
    // Another container's id and bundle: the same shim. Another environment or other flags: another one.
    expect(controlFor(['-namespace', 'ns', '-address', '/run/c.sock', '-id', 'c2', '-bundle', '/b2'], env)).toBe(control);
    expect(controlFor(ARGS, { ...env, TERN_TEST_ENV: 'two' })).not.toBe(control);
    expect(controlFor(['-namespace', 'other', '-address', '/run/c.sock', '-id', 'c1'], env)).not.toBe(control);

    const ran = join(dir, 'forked-anyway');
    writeFileSync(join(dir, 'shim.js'), `require('fs').writeFileSync(${JSON.stringify(ran)}, 'yes')`);
    const { server, requests } = await controlServer(control, () => 'ok unix:///run/containerd/s/joined\n');
    try {
      const cwd = mkdtempSync(join(dir, 'bundle-'));
      const r = await launchAsync([...ARGS, 'start'], { cwd, env });
      expect(r).toEqual({ code: 0, stdout: 'unix:///run/containerd/s/joined', stderr: '' });
      expect(requests.map((q) => q.toString('utf8'))).toEqual([[cwd, ...ARGS, 'start', ''].join('\0')]);
      expect(existsSync(ran)).toBe(false);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('start: a shim bundle installed anew (shim-main.js beside shim.js) is another shim process: the running one keeps only its own pods', () => {
    const bundle = join(dir, 'shim-main.js');
    try {
      writeFileSync(bundle, '// build 1\n');
      const first = controlFor(ARGS, env);
      expect(controlFor(ARGS, env)).toBe(first);
      writeFileSync(bundle, '// build 2, longer\n');
      expect(controlFor(ARGS, env)).not.toBe(first);
    } finally {
      rmSync(bundle, { force: true });
    }
  });

  it("start: the running shim's error is exit 1 with its cause; a shim that closes without a word (exiting) makes way for a new one", async () => {
    const control = controlFor(ARGS, env);
    const { server } = await controlServer(control, (req) => (req.includes('err-me') ? 'err bundle /x: no config.json\n' : undefined));
    try {
      let r = await launchAsync(['-namespace', 'ns', '-address', '/run/c.sock', '-id', 'err-me', 'start'], { env });
      expect(r).toEqual({ code: 1, stdout: '', stderr: 'containerd-shim-tern-v2: bundle /x: no config.json\n' });
      const out = join(dir, 'recorded.json');
      rmSync(out, { force: true });
      writeFileSync(join(dir, 'shim.js'), recordingShim(out));
      r = await launchAsync([...ARGS, 'start'], { env });
      expect(r).toEqual({ code: 0, stdout: 'unix:///forked', stderr: '' });
      expect(JSON.parse(readFileSync(out, 'utf8'))).toEqual({ control, argv: [...ARGS, 'launch'] });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("start: a dead shim's control socket (nobody behind it) is removed and a new shim is forked", () => {
    const control = controlFor(ARGS, env);
    // A socket file whose listener was killed.
    spawnSync('node', ['-e', `require('net').createServer().listen(${JSON.stringify(control)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(statSync(control).isSocket()).toBe(true);
    const out = join(dir, 'recorded.json');
    rmSync(out, { force: true });
    writeFileSync(join(dir, 'shim.js'), recordingShim(out));
    const r = spawnSync(bin(), [...ARGS, 'start'], { encoding: 'utf8', timeout: 10_000, env });
    expect(r.stdout).toBe('unix:///forked');
    expect(existsSync(control)).toBe(false);
    expect(JSON.parse(readFileSync(out, 'utf8'))).toMatchObject({ control });
  });

  it('start: a running shim silent past the deadline is named, and left running', async () => {
    const control = controlFor(ARGS, env);
    const server = createServer({ allowHalfOpen: true }, () => undefined);
    await new Promise<void>((resolve) => server.listen(control, resolve));
    try {
      const r = await launchAsync([...ARGS, 'start'], { env });
      expect(r).toEqual({ code: 1, stdout: '', stderr: `containerd-shim-tern-v2: the running shim (control socket ${control}) did not answer in time\n` });
    } finally {
      server.close();
    }
  });
});
