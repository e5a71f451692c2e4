// Command-line of containerd-shim-tern-v2, as containerd 1.6 invokes it:
//   -namespace NS -address ADDR -publish-binary BIN -id ID [-bundle DIR] [-debug] start|delete
// and our own "serve" action for the daemon that `start` launches.
import { invalidArgument } from '../common/errors';

/** `launch`: what the native launcher runs for `start` (main.ts): join a running shim or serve in this process. */
export type Action = 'start' | 'launch' | 'delete' | 'serve' | 'version';

export interface ShimArgs {
  namespace: string;
  address: string;
  publishBinary: string;
  id: string;
  bundle: string;
  debug: boolean;
  action: Action;
}

const VALUE_FLAGS: Record<string, keyof ShimArgs> = {
  namespace: 'namespace',
  address: 'address',
  'publish-binary': 'publishBinary',
  id: 'id',
  bundle: 'bundle',
};

export function parseArgs(argv: string[], cwd: string): ShimArgs {
  const out: ShimArgs = { namespace: '', address: '', publishBinary: '', id: '', bundle: '', debug: false, action: 'serve' };
  let action: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('-')) {
      let name = a.replace(/^--?/, '');
      let value: string | undefined;
      const eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      if (name === 'debug') {
        out.debug = value === undefined ? true : value !== 'false';
        continue;
      }
      if (name === 'v' || name === 'version') {
        action = 'version';
        continue;
      }
      const key = VALUE_FLAGS[name];
      if (!key) throw invalidArgument(`unknown flag -${name}`);
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined) throw invalidArgument(`flag -${name} needs a value`);
      }
      (out as unknown as Record<string, string>)[key] = value;
    } else {
      if (action !== undefined) throw invalidArgument(`unexpected argument ${a}`);
      action = a;
    }
  }
  if (action !== undefined) {
    if (!['start', 'launch', 'delete', 'serve', 'version'].includes(action)) throw invalidArgument(`unknown action ${action}`);
    out.action = action as Action;
  }
  if (!out.bundle) out.bundle = cwd;
  if (out.action !== 'version') {
    if (!out.id) throw invalidArgument('missing -id');
    if (!out.namespace) throw invalidArgument('missing -namespace');
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(out.id)) throw invalidArgument(`invalid id ${JSON.stringify(out.id)}`);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(out.namespace)) {
      throw invalidArgument(`invalid namespace ${JSON.stringify(out.namespace)}`);
    }
  }
  return out;
}

/** Arguments for re-invoking ourselves with another action. */
export function toArgv(a: ShimArgs, action: Action): string[] {
  const argv = ['-namespace', a.namespace, '-address', a.address, '-publish-binary', a.publishBinary, '-id', a.id];
  if (a.bundle) argv.push('-bundle', a.bundle);
  if (a.debug) argv.push('-debug');
  argv.push(action);
  return argv;
}
