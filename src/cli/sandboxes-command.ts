// `tern sandboxes [--json]` (alias ls) lists every tern sandbox on the host;
// `tern sandboxes inspect ID [-n NS] [--json]` shows one in detail with its
// containers and the last lines of its console log. ID is the sandbox's id,
// one of its containers' ids or its directory's name (lookupSandbox, which
// `tern logs` shares).
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { CONFIG_OPTION, flag, HELP_OPTION, JSON_OPTION, parseCommand, str } from './args';
import { duration, kibToMiB, printable, table } from './format';
import { UsageError, type CliIo } from './io';
import { consoleTail, listSandboxes, type ProcessView, type SandboxView } from './sandbox-info';
import { SANDBOXES_USAGE } from './usage';

const CONSOLE_LINES = 20;

function pidCell(p: ProcessView): string {
  if (p.pid === null) return '-';
  return p.alive ? String(p.pid) : `${p.pid}(dead)`;
}

export function renderSandboxTable(list: readonly SandboxView[]): string {
  const rows = [['NAMESPACE', 'ID', 'START', 'SHIM', 'QEMU', 'UPTIME', 'VCPUS', 'MEMORY', 'PSS', 'CONTAINERS']];
  for (const s of list) {
    rows.push([
      s.namespace ?? '?',
      s.id ?? `? (${s.dir})`,
      s.startPath ?? '-',
      pidCell(s.shim),
      pidCell(s.qemu),
      s.uptimeSeconds === null ? '-' : duration(s.uptimeSeconds),
      String(s.vcpus),
      `${s.memoryMiB} MiB`,
      s.pssKiB === null ? '-' : kibToMiB(s.pssKiB),
      String(s.containers.length),
    ]);
  }
  return table(rows);
}

export function renderSandboxDetail(s: SandboxView, console: string[] | null): string {
  const proc = (p: ProcessView) =>
    p.pid === null ? 'unknown' : `${p.pid} (${p.alive ? 'alive' : 'dead'})${p.pssKiB !== null ? `, PSS ${kibToMiB(p.pssKiB)}` : ''}`;
  const lines = [
    `namespace:  ${s.namespace ?? '?'}`,
    `id:         ${s.id ?? '?'}`,
    `directory:  ${s.dir}`,
    `created:    ${s.createdAt ?? '?'}`,
    `uptime:     ${s.uptimeSeconds === null ? '-' : duration(s.uptimeSeconds)}`,
    `started as: ${s.startPath ?? '-'}`,
    `shim:       ${proc(s.shim)}`,
    `qemu:       ${proc(s.qemu)}`,
    `vcpus:      ${s.vcpus} (from ${s.resourcesFrom})`,
    `memory:     ${s.memoryMiB} MiB (from ${s.resourcesFrom})`,
    `pss total:  ${s.pssKiB === null ? '-' : kibToMiB(s.pssKiB)}`,
  ];
  for (const p of s.problems) lines.push(`problem:    ${p}`);
  lines.push(`containers: ${s.containers.length}`);
  for (const c of s.containers) lines.push(`  ${c.id}  pid ${c.pid}${c.bundle ? `  ${c.bundle}` : ''}`);
  lines.push(console === null ? 'console:    (no console.log)' : `console (last ${CONSOLE_LINES} lines):`);
  for (const l of console ?? []) lines.push(`  ${printable(l)}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Picks the sandbox an argument names: its id, else the id of one of its
 * containers (either within -n NS if given), else its directory's hash.
 */
export function findSandbox(list: readonly SandboxView[], ref: string, namespace?: string): SandboxView[] {
  const inNamespace = (s: SandboxView) => namespace === undefined || s.namespace === namespace;
  const byId = list.filter((s) => s.id === ref && inNamespace(s));
  if (byId.length > 0) return byId;
  const byContainer = list.filter((s) => inNamespace(s) && s.containers.some((c) => c.id === ref));
  if (byContainer.length > 0) return byContainer;
  return list.filter((s) => s.dir.split('/').pop() === ref);
}

/** The one sandbox `ref` names (see findSandbox) on this host, or why there is none: a message naming it. */
export function lookupSandbox(cfg: TernConfig, ref: string, namespace?: string): { sandbox: SandboxView } | { error: string } {
  const found = findSandbox(listSandboxes(cfg), ref, namespace);
  if (found.length === 0) {
    return { error: `no sandbox or container ${JSON.stringify(ref)}${namespace ? ` in namespace ${namespace}` : ''} under ${cfg.runtime.stateDir}/sb` };
  }
  if (found.length > 1) {
    return { error: `${JSON.stringify(ref)} exists in namespaces ${found.map((s) => s.namespace).join(', ')}: pick one with -n` };
  }
  return { sandbox: found[0]! };
}

function loadCfg(p: Parameters<typeof str>[0], io: CliIo): TernConfig | null {
  try {
    return loadConfig(str(p, 'config'));
  } catch (err) {
    io.err(`tern sandboxes: ${messageOf(err)}\n`);
    return null;
  }
}

export function sandboxesCommand(argv: string[], io: CliIo): number {
  const options = { ...HELP_OPTION, ...JSON_OPTION, ...CONFIG_OPTION, namespace: { type: 'string', short: 'n' } } as const;
  const p = parseCommand(argv, options, SANDBOXES_USAGE, 2);
  if (flag(p, 'help')) {
    io.out(SANDBOXES_USAGE);
    return 0;
  }
  const [sub, ref] = p.positionals;
  if (sub !== undefined && sub !== 'inspect') throw new UsageError(`unknown sandboxes subcommand ${JSON.stringify(sub)}`, SANDBOXES_USAGE);
  if (sub === 'inspect' && ref === undefined) throw new UsageError('inspect needs a sandbox ID', SANDBOXES_USAGE);
  const cfg = loadCfg(p, io);
  if (!cfg) return 1;
  // -n filters the listing, and narrows inspect when an id is in several namespaces.
  const ns = str(p, 'namespace');

  if (sub === undefined) {
    const all = listSandboxes(cfg).filter((s) => ns === undefined || s.namespace === ns);
    io.out(flag(p, 'json') ? `${JSON.stringify(all, null, 2)}\n` : renderSandboxTable(all));
    return 0;
  }
  const found = lookupSandbox(cfg, ref!, ns);
  if ('error' in found) {
    io.err(`tern sandboxes inspect: ${found.error}\n`);
    return 1;
  }
  const s = found.sandbox;
  const tail = consoleTail(s, CONSOLE_LINES);
  io.out(flag(p, 'json') ? `${JSON.stringify({ ...s, console: tail }, null, 2)}\n` : renderSandboxDetail(s, tail));
  return 0;
}
