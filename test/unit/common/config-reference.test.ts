// The configuration reference in README.md cannot drift from the schema: its
// TOML block must hold every key of every section, with the default value,
// and nothing else.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { CONFIG_SCHEMA, defaultConfig } from '../../../src/common/config';

const README = join(__dirname, '..', '..', '..', 'README.md');

function readmeConfigBlock(): Record<string, Record<string, unknown>> {
  const text = readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## Configuration'));
  const m = /```toml\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error('no ```toml block under "## Configuration" in README.md');
  return parse(m[1]!) as Record<string, Record<string, unknown>>;
}

describe('README configuration reference', () => {
  it('lists every section and key of the schema with its default, and nothing else', () => {
    const doc = readmeConfigBlock();
    const defaults = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
    expect(Object.keys(doc).sort()).toEqual(Object.keys(CONFIG_SCHEMA).sort());
    for (const [section, keys] of Object.entries(CONFIG_SCHEMA)) {
      expect(Object.keys(doc[section]!).sort(), `[${section}]`).toEqual(Object.keys(keys).sort());
      for (const [key, [field]] of Object.entries(keys)) {
        expect(doc[section]![key], `${section}.${key}`).toEqual(defaults[section]![field]);
      }
    }
  });
});
