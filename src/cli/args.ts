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

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}
