// `tern config [--json]` prints the effective configuration with sources;
// `tern config --validate FILE` checks a file without using it.
import { readFileSync } from 'node:fs';
import { parseConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { CONFIG_OPTION, flag, HELP_OPTION, JSON_OPTION, parseCommand, str } from './args';
import { effectiveConfig, renderJson, renderToml } from './config-view';
import { UsageError, type CliIo } from './io';
import { CONFIG_USAGE } from './usage';

export function validateFile(file: string): { ok: true } | { ok: false; error: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, error: `cannot read ${file}: ${messageOf(err)}` };
  }
  try {
    parseConfig(text, file);
    return { ok: true };
  } catch (err) {
    return { ok: false, error: messageOf(err) };
  }
}

export function configCommand(argv: string[], io: CliIo): number {
  const p = parseCommand(argv, { ...HELP_OPTION, ...JSON_OPTION, ...CONFIG_OPTION, validate: { type: 'string' } }, CONFIG_USAGE);
  if (flag(p, 'help')) {
    io.out(CONFIG_USAGE);
    return 0;
  }
  const file = str(p, 'validate');
  if (file !== undefined) {
    if (str(p, 'config') !== undefined) throw new UsageError('--validate and --config cannot be combined', CONFIG_USAGE);
    const v = validateFile(file);
    if (flag(p, 'json')) io.out(`${JSON.stringify(v.ok ? { valid: true, file } : { valid: false, file, error: v.error })}\n`);
    else if (v.ok) io.out('valid\n');
    else io.err(`invalid: ${v.error}\n`);
    return v.ok ? 0 : 1;
  }
  let eff: ReturnType<typeof effectiveConfig>;
  try {
    eff = effectiveConfig(str(p, 'config'));
  } catch (err) {
    io.err(`tern config: ${messageOf(err)}\n`);
    return 1;
  }
  io.out(flag(p, 'json') ? `${JSON.stringify(renderJson(eff), null, 2)}\n` : renderToml(eff));
  return 0;
}
