// The effective configuration as the operator sees it: every key under its
// TOML (snake_case) name with its value and where it came from (default or
// the file), rendered as commented TOML or as JSON.
import { readFileSync } from 'node:fs';
import { parse, stringify } from 'smol-toml';
import { CONFIG_SCHEMA, defaultConfig, parseConfig, type TernConfig } from '../common/config';
import { invalidArgument, messageOf } from '../common/errors';

export type Source = 'default' | 'file';
type ConfigValue = string | number | boolean | string[];

/** TOML key -> TernConfig field, per section, in the order the file documents them (from the config's own schema). */
export const CONFIG_KEYS = Object.fromEntries(
  Object.entries(CONFIG_SCHEMA).map(([section, keys]) => [section, Object.entries(keys).map(([toml, [field]]) => [toml, field])]),
) as Record<keyof TernConfig, Array<[toml: string, field: string]>>;

export interface ConfigEntry {
  section: string;
  key: string;
  value: ConfigValue;
  source: Source;
}

export interface EffectiveConfig {
  /** The file consulted. */
  path: string;
  /** Whether it was read (a missing default file means all defaults). */
  fileRead: boolean;
  config: TernConfig;
  entries: ConfigEntry[];
}

/** The keys a TOML text sets, as "section.key" (the text is already known to be valid). */
export function keysSetIn(text: string): Set<string> {
  const out = new Set<string>();
  const doc = parse(text) as Record<string, unknown>;
  for (const [section, body] of Object.entries(doc)) {
    if (typeof body !== 'object' || body === null) continue;
    for (const key of Object.keys(body)) out.add(`${section}.${key}`);
  }
  return out;
}

/** Pairs a parsed config with the keys the file set. */
export function entriesOf(config: TernConfig, fromFile: ReadonlySet<string>): ConfigEntry[] {
  const out: ConfigEntry[] = [];
  for (const section of Object.keys(CONFIG_KEYS) as Array<keyof TernConfig>) {
    const fields = config[section] as unknown as Record<string, ConfigValue>;
    for (const [key, field] of CONFIG_KEYS[section]) {
      out.push({ section, key, value: fields[field]!, source: fromFile.has(`${section}.${key}`) ? 'file' : 'default' });
    }
  }
  return out;
}

/**
 * Loads the configuration like the shim does (explicit path, else TERN_CONFIG,
 * else /etc/tern/config.toml, whose absence means defaults) and records sources.
 */
export function effectiveConfig(explicit?: string): EffectiveConfig {
  const given = explicit || process.env.TERN_CONFIG || undefined;
  const path = given ?? '/etc/tern/config.toml';
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !given) {
      const config = defaultConfig();
      return { path, fileRead: false, config, entries: entriesOf(config, new Set()) };
    }
    throw invalidArgument(`cannot read tern config ${path}: ${messageOf(err)}`);
  }
  const config = parseConfig(text, path);
  return { path, fileRead: true, config, entries: entriesOf(config, keysSetIn(text)) };
}

/** TOML text, one `key = value  # source` line per key, sections in file order. */
export function renderToml(eff: EffectiveConfig): string {
  const lines = [`# effective tern configuration: defaults${eff.fileRead ? ` merged with ${eff.path}` : ` (${eff.path} not present)`}`];
  let section = '';
  for (const e of eff.entries) {
    if (e.section !== section) {
      section = e.section;
      lines.push('', `[${section}]`);
    }
    const line = stringify({ [e.key]: e.value }).trim();
    lines.push(`${line}  # ${e.source}`);
  }
  return `${lines.join('\n')}\n`;
}

export function renderJson(eff: EffectiveConfig): unknown {
  const sections: Record<string, Record<string, { value: ConfigValue; source: Source }>> = {};
  for (const e of eff.entries) (sections[e.section] ??= {})[e.key] = { value: e.value, source: e.source };
  return { path: eff.path, file_read: eff.fileRead, config: sections };
}
