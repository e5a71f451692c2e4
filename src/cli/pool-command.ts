// `tern pool serve|status`: the warm pool process and a look at it. serve
// runs in the foreground until SIGTERM or SIGINT (under systemd on a node),
// then stops every VM it still owns; status asks the running pool.
import { unlinkSync } from 'node:fs';
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { createLogger } from '../common/logging';
import { createDriver } from '../hypervisor/index';
import { besideScript, COW_GUARD_LIB } from '../shim/paths';
import { poolRequest } from '../shim/pool/client';
import { WarmPool } from '../shim/pool/pool';
import type { PoolStatus } from '../shim/pool/protocol';
import { servePool } from '../shim/pool/server';
import { parseSubcommand } from './args';
import { EXIT_FAILURE, EXIT_OK, type CliIo } from './io';
import { POOL_USAGE } from './usage';

const SUBCOMMANDS = ['serve', 'status'] as const;
type Sub = (typeof SUBCOMMANDS)[number];
const STATUS_TIMEOUT_MS = 5_000;

export function parsePoolArgs(argv: string[]): ReturnType<typeof parseSubcommand<Sub>> {
  return parseSubcommand(argv, 'pool', SUBCOMMANDS, POOL_USAGE);
}

export function renderPoolStatus(s: PoolStatus): string {
  const lines = [
    `pool pid ${s.pid}: ${s.ready.length}/${s.size} ready, ${s.starting} starting; served ${s.served}, missed ${s.missed}, failures ${s.failures}`,
    `template key: ${s.key || '(none yet)'}`,
  ];
  if (s.lastFailure) lines.push(`last failure: ${s.lastFailure}`);
  for (const vm of s.ready) lines.push(`  ${vm.name}  qemu pid ${vm.pid}  idle ${(vm.idleMs / 1000).toFixed(1)} s`);
  return `${lines.join('\n')}\n`;
}

/** Runs the pool until a signal; resolves when everything it owned is gone. */
async function serve(cfg: TernConfig, io: CliIo): Promise<void> {
  if (cfg.pool.size === 0) throw new Error('pool.size is 0: the warm pool is off (set [pool] size in the config)');
  const log = createLogger({ name: 'tern-pool', level: cfg.runtime.logLevel });
  const pool = new WarmPool(cfg, createDriver(cfg.hypervisor.driver, log, { cowGuard: besideScript(COW_GUARD_LIB) }), log);
  const swept = await pool.sweep();
  const server = await servePool(pool, cfg.pool.socket, log);
  log.info({ socket: cfg.pool.socket, size: cfg.pool.size, dir: cfg.pool.dir, swept }, 'warm pool serving');
  io.out(`tern pool: serving ${cfg.pool.size} VM(s) on ${cfg.pool.socket}\n`);
  pool.refill();
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      log.info({ signal: sig }, 'warm pool stopping');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  server.close();
  try {
    unlinkSync(cfg.pool.socket);
  } catch {
    /* already gone */
  }
  await pool.stop();
  log.info('warm pool stopped');
}

export async function poolCommand(argv: string[], io: CliIo): Promise<number> {
  const a = parsePoolArgs(argv);
  if (a.help) {
    io.out(POOL_USAGE);
    return EXIT_OK;
  }
  try {
    const cfg = loadConfig(a.config);
    if (a.sub === 'serve') {
      await serve(cfg, io);
    } else {
      const s = JSON.parse(await poolRequest(cfg.pool.socket, { op: 'status' }, STATUS_TIMEOUT_MS)) as PoolStatus;
      io.out(a.json ? `${JSON.stringify(s, null, 2)}\n` : renderPoolStatus(s));
    }
    return EXIT_OK;
  } catch (err) {
    io.err(`tern pool ${a.sub}: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
}
