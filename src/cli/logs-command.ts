// `tern logs ID [-n NS] [--json] [--since DURATION] [--source shim|guest|all] [-f]`:
// one sandbox's shim.log (with shim.log.1 before it) and its guest console
// merged in time order (log-lines.ts), printed human-readable or as JSON
// lines (log-format.ts). ID as for `tern sandboxes inspect`. With --follow
// the files are read again every POLL_MS until interrupted (SIGINT, SIGTERM)
// or until the sandbox's directory is removed.
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { shimLogPath } from '../shim/paths';
import { CONFIG_OPTION, flag, HELP_OPTION, JSON_OPTION, parseCommand, str } from './args';
import { UsageError, type CliIo } from './io';
import { fileExists, FileTail, readLines } from './log-files';
import { formatHuman, formatJson } from './log-format';
import { assignKeys, consoleEntries, mergeByTime, shimEntries, since, type LogEntry, type SourceState } from './log-lines';
import { consoleLogPath } from './sandbox-info';
import { lookupSandbox } from './sandboxes-command';
import { LOGS_USAGE } from './usage';

export const POLL_MS = 250;
const SOURCES = ['shim', 'guest', 'all'] as const;
export type SourceChoice = (typeof SOURCES)[number];

export interface LogsArgs {
  ref: string;
  namespace?: string;
  json: boolean;
  /** --since as milliseconds back from now. */
  sinceMs?: number;
  source: SourceChoice;
  follow: boolean;
  config?: string;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "90s", "10m", "1h30m", "500ms", "2d" in ms; undefined when it is not such a duration. */
export function parseDuration(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  return ms;
}

export function parseLogsArgs(argv: string[]): { help: true } | ({ help: false } & LogsArgs) {
  const options = {
    ...HELP_OPTION,
    ...JSON_OPTION,
    ...CONFIG_OPTION,
    namespace: { type: 'string', short: 'n' },
    since: { type: 'string' },
    source: { type: 'string' },
    follow: { type: 'boolean', short: 'f' },
  } as const;
  const p = parseCommand(argv, options, LOGS_USAGE, 1);
  if (flag(p, 'help')) return { help: true };
  const [ref] = p.positionals;
  if (ref === undefined) throw new UsageError('logs needs a sandbox or container ID', LOGS_USAGE);
  const sinceText = str(p, 'since');
  const sinceMs = sinceText === undefined ? undefined : parseDuration(sinceText);
  if (sinceText !== undefined && sinceMs === undefined) {
    throw new UsageError(`--since ${JSON.stringify(sinceText)} is not a duration (like 90s, 10m, 1h30m)`, LOGS_USAGE);
  }
  const source = str(p, 'source') ?? 'all';
  if (!(SOURCES as readonly string[]).includes(source)) throw new UsageError(`--source must be shim, guest or all, not ${JSON.stringify(source)}`, LOGS_USAGE);
  return {
    help: false,
    ref,
    namespace: str(p, 'namespace'),
    json: flag(p, 'json'),
    sinceMs,
    source: source as SourceChoice,
    follow: flag(p, 'follow'),
    config: str(p, 'config'),
  };
}

/** The shim's and the guest's lines of one sandbox, read in batches (the first batch: everything so far). */
class SandboxLogs {
  private readonly shimTail: FileTail;
  private readonly consoleTail: FileTail;
  private readonly shimState: SourceState = {};
  private readonly consoleState: SourceState = {};
  private first = true;

  constructor(
    readonly dir: string,
    private readonly source: SourceChoice,
  ) {
    this.shimTail = new FileTail(
      () => shimLogPath(dir),
      (p) => `${p}.1`,
    );
    // sandbox.json names the console's directory, which moves when the VM came from the warm pool.
    this.consoleTail = new FileTail(() => (existsSync(dir) ? consoleLogPath({ dir }) : null));
  }

  get shimPath(): string {
    return shimLogPath(this.dir);
  }

  consolePath(): string {
    return consoleLogPath({ dir: this.dir });
  }

  /** The next batch in time order; `final` also takes a last line without its line end. */
  read(final: boolean): LogEntry[] {
    const lists: LogEntry[][] = [];
    if (this.source !== 'guest') {
      const lines: string[] = [];
      // The rotated file's lines come first, once.
      if (this.first) lines.push(...readLines(`${this.shimPath}.1`));
      lines.push(...this.shimTail.read(), ...(final ? this.shimTail.rest() : []));
      lists.push(assignKeys(shimEntries(lines), this.shimState));
    }
    if (this.source !== 'shim') {
      const lines = [...this.consoleTail.read(), ...(final ? this.consoleTail.rest() : [])];
      lists.push(assignKeys(consoleEntries(lines), this.consoleState));
    }
    this.first = false;
    return mergeByTime(lists);
  }
}

/** Aborted by SIGINT or SIGTERM, or when stdout is gone (a closed pipe). */
function interruptSignal(): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const abort = () => ac.abort();
  process.once('SIGINT', abort);
  process.once('SIGTERM', abort);
  process.stdout.once('error', abort);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', abort);
      process.off('SIGTERM', abort);
      process.stdout.off('error', abort);
    },
  };
}

export interface LogsOptions {
  /** Ends --follow (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
  pollMs?: number;
  now?: () => number;
}

export async function logsCommand(argv: string[], io: CliIo, opts: LogsOptions = {}): Promise<number> {
  const args = parseLogsArgs(argv);
  if (args.help) {
    io.out(LOGS_USAGE);
    return 0;
  }
  let cfg: TernConfig;
  try {
    cfg = loadConfig(args.config);
  } catch (err) {
    io.err(`tern logs: ${messageOf(err)}\n`);
    return 1;
  }
  const found = lookupSandbox(cfg, args.ref, args.namespace);
  if ('error' in found) {
    io.err(`tern logs: ${found.error}\n`);
    return 1;
  }
  const sb = found.sandbox;
  const logs = new SandboxLogs(sb.dir, args.source);
  if (args.source !== 'guest' && !fileExists(logs.shimPath))
    io.err(`tern logs: no shim log ${logs.shimPath} (runtime.shim_log_max_kib = 0, or the shim has not started)\n`);
  if (args.source !== 'shim' && !fileExists(logs.consolePath())) io.err(`tern logs: no guest console ${logs.consolePath()} (the VM has not started)\n`);

  const sinceMs = args.sinceMs === undefined ? undefined : (opts.now ?? Date.now)() - args.sinceMs;
  const print = (entries: readonly LogEntry[]) => {
    const shown = since(entries, sinceMs);
    if (shown.length > 0) io.out(shown.map((e) => `${args.json ? formatJson(e) : formatHuman(e)}\n`).join(''));
  };
  print(logs.read(!args.follow));
  if (!args.follow) return 0;

  const interrupt = opts.signal ? undefined : interruptSignal();
  const signal = opts.signal ?? interrupt!.signal;
  try {
    while (!signal.aborted) {
      try {
        await sleep(opts.pollMs ?? POLL_MS, undefined, { signal });
      } catch {
        break; // interrupted
      }
      if (!existsSync(sb.dir)) {
        print(logs.read(true));
        io.err(`tern logs: sandbox ${sb.id ?? args.ref} is gone (its directory ${sb.dir} was removed)\n`);
        return 0;
      }
      print(logs.read(false));
    }
    print(logs.read(true));
    return 0;
  } finally {
    interrupt?.dispose();
  }
}
