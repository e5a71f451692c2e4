// The shim process that serves many pods (shim-daemon.ts), with a stand-in for
// serving a pod: its control requests read back exactly, each answered with
// the pod's address or the cause; a pod whose launcher went away before the
// answer is stopped again; the process ends (its control socket removed
// first) when its last pod is gone; a dead shim's control socket is taken over,
// a live one's never.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../../src/common/logging';
import type { ShimArgs } from '../../../src/shim/args';
import type { PodHost, ServedPod } from '../../../src/shim/serve';
import { parseRequest, ShimDaemon, type ShimDaemonDeps } from '../../../src/shim/shim-daemon';

describe('shim control request', () => {
  it('is the working directory, then the arguments, each NUL-terminated', () => {
    const req = Buffer.from(['/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1', '-namespace', 'k8s.io', '-id', 'c1', 'start', ''].join('\0'));
    expect(parseRequest(req)).toEqual({ cwd: '/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1', argv: ['-namespace', 'k8s.io', '-id', 'c1', 'start'] });
    // An empty argument stays one (containerd may pass -publish-binary "").
    expect(parseRequest(Buffer.from('/b\0-publish-binary\0\0start\0')).argv).toEqual(['-publish-binary', '', 'start']);
  });

  it('refuses a request cut short, without a directory or without arguments', () => {
    expect(() => parseRequest(Buffer.from('/b\0start'))).toThrow(/not NUL-terminated/);
    expect(() => parseRequest(Buffer.from(''))).toThrow(/not NUL-terminated/);
    expect(() => parseRequest(Buffer.from('\0start\0'))).toThrow(/no working directory/);
    expect(() => parseRequest(Buffer.from('/b\0'))).toThrow(/no arguments/);
  });
});

const ARGS = ['-namespace', 'ns', '-address', '/run/c.sock', '-publish-binary', '/usr/bin/containerd'];
const request = (bundle: string, id: string, action = 'start') => Buffer.from(`${[bundle, ...ARGS, '-id', id, action].join('\0')}\0`);

/** Sends a request on the control socket as the launcher does (then end-of-file) and reads the answer to its end. */
function ask(control: string, req: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(control);
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => resolve(out));
    s.on('error', reject);
    s.end(req);
  });
}

interface Stand {
  deps: ShimDaemonDeps;
  served: Array<{ args: ShimArgs; host: PodHost; pod: ServedPod }>;
  stopped: string[];
  exits: number;
  /** Makes serving the pod of this id wait until the returned function is called. */
  hold(id: string): () => void;
}

/** Serving a pod stands in for serve.ts: it records the pod; stopping it (or the test) ends it through host.gone. */
function standIn(): Stand {
  const held = new Map<string, Promise<void>>();
  const stand: Stand = {
    served: [],
    stopped: [],
    exits: 0,
    hold(id) {
      let release: (() => void) | undefined;
      held.set(id, new Promise<void>((r) => (release = r)));
      return () => release?.();
    },
    deps: {
      serve: async (args, host) => {
        await held.get(args.id);
        if (args.id === 'bad') throw new Error('bundle /x: no config.json');
        const pod: ServedPod = {
          socket: `/s/${args.id}`,
          address: `unix:///s/${args.id}`,
          log: silentLogger,
          stop: async (reason) => {
            stand.stopped.push(`${args.id}: ${reason}`);
            host.gone(pod);
          },
        };
        stand.served.push({ args, host, pod });
        return pod;
      },
      running: async (args) => (args.id === 'joiner' ? 'unix:///s/first' : undefined),
      exit: () => {
        stand.exits++;
      },
    },
  };
  return stand;
}

describe('shim process serving many pods', () => {
  let dir: string;
  let control: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tern-shimd-'));
    control = join(dir, 'tern-0123456789abcdef');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('serves its first pod, then each pod asked for on the control socket; exits once the last is gone, its control socket removed first', async () => {
    const s = standIn();
    const d = new ShimDaemon(control, s.deps);
    expect(
      await d.serveFirst({ namespace: 'ns', address: '/run/c.sock', publishBinary: '', id: 'first', bundle: '/b/first', debug: false, action: 'launch' }),
    ).toBe('unix:///s/first');
    expect(statSync(control).isSocket()).toBe(true);
    const before = Date.now();
    expect(await ask(control, request('/b/c2', 'c2'))).toBe('ok unix:///s/c2\n');
    expect(s.served[1]!.args).toMatchObject({
      namespace: 'ns',
      address: '/run/c.sock',
      publishBinary: '/usr/bin/containerd',
      id: 'c2',
      bundle: '/b/c2',
      action: 'start',
    });
    expect(s.served[1]!.host.requestedAt).toBeGreaterThanOrEqual(before);
    expect(s.served[1]!.host.controlSocket).toBe(control);
    // A CRI container joining its running pod: only that pod's address.
    expect(await ask(control, request('/b/joiner', 'joiner'))).toBe('ok unix:///s/first\n');
    expect(d.podCount).toBe(2);

    s.served[0]!.host.gone(s.served[0]!.pod);
    expect(s.exits).toBe(0);
    expect(await ask(control, request('/b/c3', 'c3'))).toBe('ok unix:///s/c3\n');
    s.served[1]!.host.gone(s.served[1]!.pod);
    expect(s.exits).toBe(0);
    s.served[2]!.host.gone(s.served[2]!.pod);
    expect(s.exits).toBe(1);
    expect(existsSync(control)).toBe(false);
    await expect(ask(control, request('/b/c4', 'c4'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('answers the cause of a request it cannot serve, and stops a pod whose launcher went away before the answer', async () => {
    const s = standIn();
    const d = new ShimDaemon(control, s.deps);
    await d.serveFirst({ namespace: 'ns', address: '/run/c.sock', publishBinary: '', id: 'first', bundle: '/b/first', debug: false, action: 'launch' });
    expect(await ask(control, request('/b/bad', 'bad'))).toBe('err bundle /x: no config.json\n');
    expect(await ask(control, Buffer.from('garbage'))).toBe('err shim request: not NUL-terminated\n');
    expect(await ask(control, request('/b/c2', 'c2', 'delete'))).toBe('err shim request: action delete, want start\n');
    expect(d.podCount).toBe(1);

    // The launcher gives up (its deadline) while the pod is still being served.
    const release = s.hold('late');
    const launcher = connect(control);
    await new Promise<void>((r) => launcher.once('connect', () => r()));
    launcher.end(request('/b/late', 'late'));
    await vi.waitFor(() => expect(d.podCount).toBe(1));
    launcher.destroy();
    await new Promise((r) => setTimeout(r, 50));
    release();
    await vi.waitFor(() => expect(s.stopped).toEqual(['late: its start went away before the answer']));
    expect(d.podCount).toBe(1);
    expect(s.exits).toBe(0);
  });

  it("takes over a dead shim's control socket, and never a live one's", async () => {
    // A socket file whose listener was killed.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(control)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(statSync(control).isSocket()).toBe(true);
    const s = standIn();
    await new ShimDaemon(control, s.deps).serveFirst({
      namespace: 'ns',
      address: '/a',
      publishBinary: '',
      id: 'first',
      bundle: '/b',
      debug: false,
      action: 'launch',
    });
    expect(await ask(control, request('/b/c2', 'c2'))).toBe('ok unix:///s/c2\n');

    const live = join(dir, 'tern-fedcba9876543210');
    const other = createServer((c) => {
      // The probe that finds it alive connects and goes at once.
      c.on('error', () => undefined);
      c.resume();
      c.end('the other shim\n');
    });
    await new Promise<void>((r) => other.listen(live, () => r()));
    try {
      const t = standIn();
      // It serves its first pod all the same, and no other.
      expect(
        await new ShimDaemon(live, t.deps).serveFirst({
          namespace: 'ns',
          address: '/a',
          publishBinary: '',
          id: 'p',
          bundle: '/b',
          debug: false,
          action: 'launch',
        }),
      ).toBe('unix:///s/p');
      expect(await ask(live, request('/b/c2', 'c2'))).toBe('the other shim\n');
    } finally {
      await new Promise((r) => other.close(r));
    }
  });
});
