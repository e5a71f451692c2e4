// The tern CLI's dispatcher: picks the subcommand, runs it, and turns the
// outcome into an exit code (0 ok, 1 failure reported, 2 usage error with the
// usage text on stderr). Runs in-process so tests can call it directly.
import { messageOf } from '../common/errors';
import { version as PACKAGE_VERSION } from '../../package.json';
import { flag, HELP_OPTION, JSON_OPTION, parseCommand } from './args';
import { checkCommand } from './check-command';
import { configCommand } from './config-command';
import { debugShellCommand } from './debug-shell-command';
import { factoryCommand } from './factory-command';
import { gcCommand } from './gc-command';
import { poolCommand } from './pool-command';
import { installCommand } from './install-command';
import { logsCommand } from './logs-command';
import { metricsCommand } from './metrics-command';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, type CliIo } from './io';
import { sandboxesCommand } from './sandboxes-command';
import { MAIN_USAGE, VERSION_USAGE } from './usage';

export const VERSION: string = PACKAGE_VERSION;

function versionCommand(argv: string[], io: CliIo): number {
  const p = parseCommand(argv, { ...HELP_OPTION, ...JSON_OPTION }, VERSION_USAGE);
  if (flag(p, 'help')) io.out(VERSION_USAGE);
  else if (flag(p, 'json')) io.out(`${JSON.stringify({ version: VERSION, node: process.version })}\n`);
  else io.out(`tern ${VERSION}\n`);
  return EXIT_OK;
}

const COMMANDS: Record<string, (argv: string[], io: CliIo) => number | Promise<number>> = {
  version: versionCommand,
  check: checkCommand,
  config: configCommand,
  sandboxes: sandboxesCommand,
  ls: sandboxesCommand,
  logs: (argv, io) => logsCommand(argv, io),
  factory: factoryCommand,
  pool: poolCommand,
  gc: gcCommand,
  install: installCommand,
  'debug-shell': debugShellCommand,
  metrics: metricsCommand,
};

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (name === undefined) throw new UsageError('no command given', MAIN_USAGE);
    if (name === '-h' || name === '--help' || name === 'help') {
      const topic = name === 'help' && rest[0] !== undefined ? rest[0] : undefined;
      if (topic === undefined) {
        io.out(MAIN_USAGE);
        return EXIT_OK;
      }
      const cmd = Object.hasOwn(COMMANDS, topic) ? COMMANDS[topic] : undefined;
      if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(topic)}`, MAIN_USAGE);
      return await cmd(['--help'], io);
    }
    if (name === '--version' || name === '-v') return versionCommand([], io);
    const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!cmd) throw new UsageError(`unknown command ${JSON.stringify(name)}`, MAIN_USAGE);
    return await cmd(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`tern: ${err.message}\n\n${err.usage}`);
      return EXIT_USAGE;
    }
    io.err(`tern: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
}
