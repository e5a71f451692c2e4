// `tern metrics serve [--listen ADDR]`: the Prometheus endpoint, in the
// foreground until SIGTERM or SIGINT (off unless an operator runs it, e.g.
// as a systemd unit). It only reads: sandbox directories, /proc, the shims'
// Task.Stats, the pool's status and the start events file.
import { join } from 'node:path';
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf, TernError } from '../common/errors';
import { createLogger } from '../common/logging';
import { CONFIG_OPTION, flag, HELP_OPTION, parseCommand, str } from './args';
import { EXIT_FAILURE, EXIT_OK, UsageError, type CliIo } from './io';
import { Collector, parseListen, serveMetrics, type ListenAddress, type MetricsServer } from './metrics/index';
import { METRICS_USAGE } from './usage';

export interface MetricsArgs {
  help: boolean;
  listen?: ListenAddress;
  config?: string;
}

/** The command line; UsageError for an unknown subcommand or a bad (or non-loopback) --listen. */
export function parseMetricsArgs(argv: string[]): MetricsArgs {
  const p = parseCommand(argv, { ...HELP_OPTION, ...CONFIG_OPTION, listen: { type: 'string', short: 'l' } }, METRICS_USAGE, 1);
  if (flag(p, 'help')) return { help: true };
  const [sub] = p.positionals;
  if (sub === undefined) throw new UsageError('metrics needs a subcommand: serve', METRICS_USAGE);
  if (sub !== 'serve') throw new UsageError(`unknown metrics subcommand ${JSON.stringify(sub)}`, METRICS_USAGE);
  const text = str(p, 'listen');
  let listen: ListenAddress | undefined;
  if (text !== undefined) {
    try {
      listen = parseListen(text);
    } catch (err) {
      if (err instanceof TernError) throw new UsageError(err.message, METRICS_USAGE);
      throw err;
    }
  }
  return { help: false, listen, config: str(p, 'config') };
}

/** Default --listen: a unix socket in the state directory. */
export function defaultListen(cfg: TernConfig): ListenAddress {
  return { kind: 'unix', path: join(cfg.runtime.stateDir, 'metrics.sock') };
}

/** Starts the endpoint (the command's work before it waits for a signal). */
export function startMetrics(cfg: TernConfig, listen: ListenAddress, onError: (what: string, err: unknown) => void = () => undefined): Promise<MetricsServer> {
  const collector = new Collector(cfg, { onError: (reason, message) => onError(reason, message) });
  return serveMetrics(
    listen,
    () => collector.scrape(),
    (err) => onError('server', err),
  );
}

export async function metricsCommand(argv: string[], io: CliIo): Promise<number> {
  const a = parseMetricsArgs(argv);
  if (a.help) {
    io.out(METRICS_USAGE);
    return EXIT_OK;
  }
  let cfg: TernConfig;
  try {
    cfg = loadConfig(a.config);
  } catch (err) {
    io.err(`tern metrics serve: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
  const log = createLogger({ name: 'tern-metrics', level: cfg.runtime.logLevel });
  let server: MetricsServer;
  try {
    server = await startMetrics(cfg, a.listen ?? defaultListen(cfg), (what, err) => log.warn({ what, err: messageOf(err) }, 'scrape problem'));
  } catch (err) {
    io.err(`tern metrics serve: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
  io.out(`tern metrics: serving /metrics on ${server.address}\n`);
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      log.info({ signal: sig }, 'metrics endpoint stopping');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await server.close();
  return EXIT_OK;
}
