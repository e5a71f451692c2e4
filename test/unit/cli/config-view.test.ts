// The CLI's key table agrees with the config parser, and the rendered TOML
// round-trips through parseConfig to the same configuration.
import { describe, expect, it } from 'vitest';
import { defaultConfig, parseConfig, type TernConfig } from '../../../src/common/config';
import { CONFIG_KEYS, entriesOf, keysSetIn, renderToml } from '../../../src/cli/config-view';

const SAMPLE: Record<string, string> = { string: '"x"', number: '777', 'string[]': '["a", "b"]' };

describe('CONFIG_KEYS', () => {
  it('covers every field of the config', () => {
    const cfg = defaultConfig();
    for (const section of Object.keys(cfg) as Array<keyof TernConfig>) {
      const fields = CONFIG_KEYS[section].map(([, f]) => f).sort();
      expect(fields).toEqual(Object.keys(cfg[section]).sort());
    }
  });

  it('maps each TOML key to the field parseConfig sets', () => {
    for (const section of Object.keys(CONFIG_KEYS) as Array<keyof TernConfig>) {
      for (const [key, field] of CONFIG_KEYS[section]) {
        const def = (defaultConfig()[section] as unknown as Record<string, unknown>)[field];
        const kind = Array.isArray(def) ? 'string[]' : typeof def;
        // a boolean's sample is the opposite of its default
        let value = kind === 'boolean' ? String(!def) : SAMPLE[kind]!;
        if (key === 'accel') value = '"tcg"';
        if (key === 'log_level') value = '"debug"';
        if (key === 'template_dir' || key === 'socket' || key === 'dir') value = '"/x"';
        if (section === 'pool' && key === 'size') value = '3';
        if (key === 'layer_slots') value = '2';
        const parsed = parseConfig(`[${section}]\n${key} = ${value}\n`);
        expect((parsed[section] as unknown as Record<string, unknown>)[field], `${section}.${key}`).not.toEqual(def);
      }
    }
  });
});

describe('renderToml', () => {
  it('marks sources and parses back to the same config', () => {
    const text = '[hypervisor]\nmemory_mib = 1024\n[agent]\ncall_timeout_ms = 5\n';
    const cfg = parseConfig(text);
    const keys = keysSetIn(text);
    expect([...keys].sort()).toEqual(['agent.call_timeout_ms', 'hypervisor.memory_mib']);
    const out = renderToml({ path: '/x.toml', fileRead: true, config: cfg, entries: entriesOf(cfg, keys) });
    expect(out).toMatch(/^# effective tern configuration: defaults merged with \/x\.toml/);
    expect(out).toContain('memory_mib = 1024  # file');
    expect(out).toContain('call_timeout_ms = 5  # file');
    expect(out).toContain('driver = "qemu"  # default');
    expect(parseConfig(out)).toEqual(cfg);
  });
});
