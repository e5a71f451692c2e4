// `tern install`: registers tern with containerd (a marked block in its main
// config, see install.ts) and prints the Kubernetes RuntimeClass manifest. Idempotent; --dry-run prints what it
// would change as a line diff and changes nothing. containerd reads its
// config at start: it must be restarted afterwards (said when needed).
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { DEFAULT_CONFIG_PATH } from '../common/config';
import { messageOf } from '../common/errors';
import { flag, HELP_OPTION, JSON_OPTION, parseCommand, str } from './args';
import { lineDiff, planInstall, type InstallOptions } from './install';
import { EXIT_FAILURE, EXIT_OK, type CliIo } from './io';
import { INSTALL_USAGE } from './usage';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';
// Measured per idle pod here: QEMU ~95-140 MiB PSS (TCG's translation cache
// included) plus the shim ~23 MiB; the CPU share covers the guest's own idle work.
const OVERHEAD_MEMORY = '160Mi';
const OVERHEAD_CPU = '250m';

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = `${path}.tern-install-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o644 });
  renameSync(tmp, path);
}

export async function installCommand(argv: string[], io: CliIo): Promise<number> {
  const p = parseCommand(
    argv,
    {
      ...HELP_OPTION,
      ...JSON_OPTION,
      'dry-run': { type: 'boolean' },
      'containerd-config': { type: 'string' },
      handler: { type: 'string' },
      config: { type: 'string', short: 'c' },
    },
    INSTALL_USAGE,
  );
  if (flag(p, 'help')) {
    io.out(INSTALL_USAGE);
    return EXIT_OK;
  }
  const opts: InstallOptions = {
    containerdConfig: str(p, 'containerd-config') ?? DEFAULT_CONTAINERD_CONFIG,
    handler: str(p, 'handler') ?? 'tern',
    ternConfig: str(p, 'config') ?? process.env.TERN_CONFIG ?? DEFAULT_CONFIG_PATH,
    overheadMemory: OVERHEAD_MEMORY,
    overheadCpu: OVERHEAD_CPU,
  };
  const dryRun = flag(p, 'dry-run');
  try {
    const plan = planInstall(opts, readOrNull);
    if (!dryRun) for (const c of plan.changes) writeAtomic(c.path, c.after);
    if (flag(p, 'json')) {
      io.out(`${JSON.stringify({ dryRun, changed: plan.changes.map((c) => c.path), runtimeClass: plan.runtimeClass }, null, 2)}\n`);
      return EXIT_OK;
    }
    if (plan.changes.length === 0) io.out('tern is already installed in containerd: nothing to change\n');
    for (const c of plan.changes) {
      io.out(`${dryRun ? 'would ' : ''}${c.before === null ? 'create' : 'change'} ${c.path}:\n${lineDiff(c.before, c.after)}`);
    }
    if (plan.changes.length > 0 && !dryRun) io.out('restart containerd to load it (systemctl restart containerd); running containers keep running\n');
    io.out(`\nKubernetes RuntimeClass (kubectl apply -f -):\n---\n${plan.runtimeClass}`);
    return EXIT_OK;
  } catch (err) {
    io.err(`tern install: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
}
