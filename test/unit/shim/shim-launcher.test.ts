// The native launcher (helpers/tern-shim-launch.c), compiled here with a short
// deadline, beside stand-in shim.js scripts: `start` forks the daemon and
// prints its address once it says "ok <address>" (the daemon keeps running in
// a session of its own); "err ..." or silence is exit 1 with the cause on
// stderr; a daemon past the deadline is killed; any other action execs node
// with the same arguments, shown as containerd-shim-tern-v2 in ps; but
// `delete` prints the answer a clean exit left in the bundle, if there is one.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { procAlive } from '../../../src/common/proc';
import { decode } from '../../../src/common/proto';
import { DELETE_ANSWER_FILE, goneDeleteResponse } from '../../../src/shim/delete';

let dir: string;
const bin = () => join(dir, 'containerd-shim-tern-v2');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-launcher-'));
  execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-DREADY_TIMEOUT_MS=500', '-o', bin(), join(__dirname, '../../../helpers/tern-shim-launch.c')]);
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
