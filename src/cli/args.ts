// Command-line parsing on top of node:util parseArgs: strict (unknown flags
// are errors), and every parse error becomes a UsageError carrying the
// subcommand's usage text, so the caller exits 2 with it on stderr.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './io';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function parseCommand(argv: string[], options: Options, usage: string, maxPositionals = 0): Parsed {
  let parsed: Parsed;
  try {
    const r = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
    parsed = { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (err) {
    throw new UsageError((err as Error).message, usage);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[maxPositionals])}`, usage);
  }
  return parsed;
}

export const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;
export const JSON_OPTION = { json: { type: 'boolean' } } as const;
export const CONFIG_OPTION = { config: { type: 'string', short: 'c' } } as const;

/**
 * `tern <command> <sub> [--json] [--config PATH]`: the subcommand (one of
 * `subs`) and those flags; UsageError naming what is wrong.
 */
export function parseSubcommand<S extends string>(
  argv: string[],
  command: string,
  subs: readonly S[],
  usage: string,
): { help: true } | { help: false; sub: S; json: boolean; config?: string } {
  const p = parseCommand(argv, { ...HELP_OPTION, ...JSON_OPTION, ...CONFIG_OPTION }, usage, 1);
  if (flag(p, 'help')) return { help: true };
  const [sub] = p.positionals;
  const list = subs.length > 1 ? `${subs.slice(0, -1).join(', ')} or ${subs[subs.length - 1]}` : subs.join('');
  if (sub === undefined) throw new UsageError(`${command} needs a subcommand: ${list}`, usage);
  if (!(subs as readonly string[]).includes(sub)) throw new UsageError(`unknown ${command} subcommand ${JSON.stringify(sub)}`, usage);
  return { help: false, sub: sub as S, json: flag(p, 'json'), config: str(p, 'config') };
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}
