// `tern factory status|init|destroy`: the VM templates of this host, in the
// store at factory.template_dir. status lists them; init builds (or finds)
// the template for the configured default guest shape by booting a template
// VM; destroy removes every template, after any build in progress, and
// unmounts the store's tmpfs.
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { createLogger, type Logger } from '../common/logging';
import { createDriver } from '../hypervisor/index';
import { VmFactory } from '../shim/templates/factory';
import { TemplateStore } from '../shim/templates/store';
import { parseSubcommand } from './args';
import { factoryStatus, initTemplate, renderFactoryStatus, renderInit } from './factory-view';
import { EXIT_FAILURE, EXIT_OK, type CliIo } from './io';
import { FACTORY_USAGE } from './usage';

const SUBCOMMANDS = ['status', 'init', 'destroy'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

/** The subcommand and its flags; throws UsageError for a wrong command line. */
export function parseFactoryArgs(argv: string[]): ReturnType<typeof parseSubcommand<Sub>> {
  return parseSubcommand(argv, 'factory', SUBCOMMANDS, FACTORY_USAGE);
}

/** Logs to stderr at the configured level: a template build takes a while and says what it does. */
function stderrLogger(cfg: TernConfig): Logger {
  return createLogger({ name: 'tern-factory', level: cfg.runtime.logLevel });
}

async function run(sub: Sub, cfg: TernConfig, json: boolean, io: CliIo): Promise<void> {
  const log = stderrLogger(cfg);
  if (sub === 'status') {
    const v = factoryStatus(cfg, new TemplateStore(cfg.factory.templateDir, log));
    io.out(json ? JSON.stringify(v, null, 2) + '\n' : renderFactoryStatus(v));
  } else if (sub === 'init') {
    const factory = new VmFactory(cfg, createDriver(cfg.hypervisor.driver, log), log);
    const r = await initTemplate(cfg, factory);
    io.out(json ? JSON.stringify(r, null, 2) + '\n' : renderInit(r));
  } else {
    const store = new TemplateStore(cfg.factory.templateDir, log);
    const templates = store.status().filter((s) => s.state !== 'failed').length;
    await store.destroyAll();
    io.out(json ? JSON.stringify({ destroyed: true, dir: store.dir, templates }) + '\n' : `removed ${templates} template(s) and the store ${store.dir}\n`);
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
