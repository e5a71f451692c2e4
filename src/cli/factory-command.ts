// `tern factory status|init|destroy`: the VM templates of this host, in the
// store at factory.template_dir. status lists them; init builds (or finds)
// the template for the configured default guest shape by booting a template
// VM, showing its phases as progress on stderr; destroy removes every template, after any build in progress, and
// unmounts the store's tmpfs.
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { createLogger, type Logger } from '../common/logging';
import type { Progress } from '../common/progress';
import { createDriver } from '../hypervisor/index';
import { besideScript, COW_GUARD_LIB } from '../shim/paths';
import { VmFactory } from '../shim/templates/factory';
import { TemplateStore } from '../shim/templates/store';
import { parseSubcommand } from './args';
import { initProgress, LOOKUP_LABEL, templatePhaseSteps } from './factory-progress';
import { factoryStatus, initTemplate, renderFactoryStatus, renderInit, type InitResult } from './factory-view';
import { EXIT_FAILURE, EXIT_OK, type CliIo } from './io';
import { FACTORY_USAGE } from './usage';

const SUBCOMMANDS = ['status', 'init', 'destroy'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

/** The subcommand and its flags; throws UsageError for a wrong command line. */
export function parseFactoryArgs(argv: string[]): ReturnType<typeof parseSubcommand<Sub>> {
  return parseSubcommand(argv, 'factory', SUBCOMMANDS, FACTORY_USAGE);
}

/**
 * Logs to stderr at the configured level: a template build takes a while and
 * says what it does. With a live progress line there, lines pass through it.
 */
function stderrLogger(cfg: TernConfig, progress?: Progress): Logger {
  const stream = progress?.mode === 'live' ? { write: (line: string) => progress.print(line) } : undefined;
  return createLogger({ name: 'tern-factory', level: cfg.runtime.logLevel, stream });
}

/** init, with its progress on io.progress: the lookup, then each build phase. */
async function init(cfg: TernConfig, io: CliIo): Promise<InitResult> {
  const progress = initProgress(io.progress);
  const log = stderrLogger(cfg, progress);
  progress.begin(LOOKUP_LABEL);
  try {
    const factory = new VmFactory(cfg, createDriver(cfg.hypervisor.driver, log, { cowGuard: besideScript(COW_GUARD_LIB) }), log);
    return await initTemplate(cfg, factory, templatePhaseSteps(progress));
  } catch (err) {
    progress.fail();
    throw err;
  } finally {
    progress.end();
  }
}

async function run(sub: Sub, cfg: TernConfig, json: boolean, io: CliIo): Promise<void> {
  if (sub === 'init') {
    const r = await init(cfg, io);
    io.out(json ? `${JSON.stringify(r, null, 2)}\n` : renderInit(r));
    return;
  }
  const log = stderrLogger(cfg);
  if (sub === 'status') {
    const v = factoryStatus(cfg, new TemplateStore(cfg.factory.templateDir, log));
    io.out(json ? `${JSON.stringify(v, null, 2)}\n` : renderFactoryStatus(v));
  } else {
    const store = new TemplateStore(cfg.factory.templateDir, log);
    const templates = store.status().filter((s) => s.state !== 'failed').length;
    await store.destroyAll();
    io.out(json ? `${JSON.stringify({ destroyed: true, dir: store.dir, templates })}\n` : `removed ${templates} template(s) and the store ${store.dir}\n`);
  }
}

export async function factoryCommand(argv: string[], io: CliIo): Promise<number> {
  const a = parseFactoryArgs(argv);
  if (a.help) {
    io.out(FACTORY_USAGE);
    return EXIT_OK;
  }
  let cfg: TernConfig;
  try {
    cfg = loadConfig(a.config);
  } catch (err) {
    io.err(`tern factory: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
  try {
    await run(a.sub, cfg, a.json, io);
    return EXIT_OK;
  } catch (err) {
    io.err(`tern factory ${a.sub}: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
}
