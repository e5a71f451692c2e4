// The warm pool a benchmark runs for its tern-pool path: `tern pool serve`
// with the bench's tern-pool config, started and stopped by pid. Each
// measured pool start waits (unmeasured) until the pool is full again: the
// figure is a start with a ready VM waiting, which is what a pool is for.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { poolRequest } from '../src/shim/pool/client.js';
import type { PoolStatus } from '../src/shim/pool/protocol.js';

export class BenchPool {
  private output = '';
  private constructor(
    private readonly child: ChildProcess,
    private readonly socket: string,
    readonly size: number,
  ) {
    const keep = (b: Buffer) => {
      this.output = (this.output + b.toString()).slice(-8000);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  /** Starts `tern pool serve --config cfgPath`; socket is that config's pool.socket. */
  static start(root: string, cfgPath: string, socket: string, size: number): BenchPool {
    const child = spawn(process.execPath, [join(root, 'dist', 'tern.js'), 'pool', 'serve', '--config', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    return new BenchPool(child, socket, size);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  async status(): Promise<PoolStatus | undefined> {
    try {
      return JSON.parse(await poolRequest(this.socket, { op: 'status' }, 5_000)) as PoolStatus;
    } catch {
      return undefined;
    }
  }

  /** Waits until `size` VMs are ready and none is starting. */
  async waitFull(timeoutMs = 600_000): Promise<PoolStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`tern pool exited ${this.child.exitCode}: ${this.output.trim().split('\n').pop()}`);
      const s = await this.status();
      if (s && s.ready.length >= this.size && s.starting === 0) return s;
      if (Date.now() > deadline) throw new Error(`the warm pool did not fill to ${this.size} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM (the pool removes its idle VMs) and wait for it to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}
