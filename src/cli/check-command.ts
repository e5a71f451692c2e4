// `tern check [--json]`: gathers host facts, judges them, prints one line per
// check (verdict, name, reason) or JSON; exit 1 when any check failed.
import { CHECK_USAGE } from './usage';
import { CONFIG_OPTION, flag, HELP_OPTION, JSON_OPTION, parseCommand, str } from './args';
import { checksExitCode, runChecks, type CheckResult } from './checks';
import { table } from './format';
import { gatherHostFacts } from './host-facts';
import type { CliIo } from './io';

export function renderChecks(results: readonly CheckResult[]): string {
  const counts = { ok: 0, warn: 0, fail: 0 };
  for (const c of results) counts[c.verdict]++;
  const body = table(results.map((c) => [c.verdict, c.name, c.reason]));
  return `${body}\n${counts.ok} ok, ${counts.warn} warn, ${counts.fail} fail\n`;
}

export async function checkCommand(argv: string[], io: CliIo): Promise<number> {
  const p = parseCommand(argv, { ...HELP_OPTION, ...JSON_OPTION, ...CONFIG_OPTION }, CHECK_USAGE);
  if (flag(p, 'help')) {
    io.out(CHECK_USAGE);
    return 0;
  }
  const results = runChecks(await gatherHostFacts(str(p, 'config')));
  const code = checksExitCode(results);
  if (flag(p, 'json')) io.out(`${JSON.stringify({ ok: code === 0, checks: results }, null, 2)}\n`);
  else io.out(renderChecks(results));
  return code;
}
