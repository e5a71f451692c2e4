// `tern debug-shell ID`: a root shell inside the sandbox's guest (not inside a
// container), over the VM's own debug port (<vm dir>/debug.sock), which exists
// only when agent.debug_shell was on when the VM started. The terminal is put
// in raw mode; the guest's shell does the line editing. Input that ends (a
// pipe) is followed by `exit`, so `echo cmd | tern debug-shell ID` runs and returns.
// Exit status: the shell's, or 1 when there is no shell to reach.
import { existsSync, readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { loadConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { CONFIG_OPTION, flag, HELP_OPTION, parseCommand, str } from './args';
import { EXIT_FAILURE, EXIT_OK, UsageError, type CliIo } from './io';
import { lookupSandbox } from './sandboxes-command';
import { DEBUG_SHELL_USAGE } from './usage';

/** Must match the guest's marker (src/agent/debug-shell.ts). */
const EXIT_MARKER = /\r?\n?\[tern: guest shell exited with status (-?\d+)\]\r?\n?/;
const CONNECT_TIMEOUT_MS = 5000;

export interface ShellStreams {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown };
  stdout: NodeJS.WritableStream;
}

/** Where a sandbox's VM keeps its sockets: sandbox.json's vmDir (a pooled VM's), else <dir>/vm. */
export function vmDirOf(sandboxDir: string): string {
  try {
    const rec = JSON.parse(readFileSync(join(sandboxDir, 'sandbox.json'), 'utf8')) as { vmDir?: unknown };
    if (typeof rec.vmDir === 'string' && rec.vmDir) return rec.vmDir;
  } catch {
    /* no record: the default place */
  }
  return join(sandboxDir, 'vm');
}

export async function debugShellCommand(argv: string[], io: CliIo, streams: ShellStreams = { stdin: process.stdin, stdout: process.stdout }): Promise<number> {
  const options = { ...HELP_OPTION, ...CONFIG_OPTION, namespace: { type: 'string', short: 'n' } } as const;
  const p = parseCommand(argv, options, DEBUG_SHELL_USAGE, 1);
  if (flag(p, 'help')) {
    io.out(DEBUG_SHELL_USAGE);
    return EXIT_OK;
  }
  const ref = p.positionals[0];
  if (ref === undefined) throw new UsageError('debug-shell needs a sandbox or container id', DEBUG_SHELL_USAGE);
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(str(p, 'config'));
  } catch (err) {
    io.err(`tern debug-shell: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
  const found = lookupSandbox(cfg, ref, str(p, 'namespace'));
  if ('error' in found) {
    io.err(`tern debug-shell: ${found.error}\n`);
    return EXIT_FAILURE;
  }
  const id = found.sandbox.id ?? ref;
  const socketPath = join(vmDirOf(found.sandbox.dir), 'debug.sock');
  if (!existsSync(socketPath)) {
    io.err(
      `tern debug-shell: sandbox ${id} has no debug shell: it is off (set debug_shell = true under [agent] in the tern config; it applies to VMs started afterwards)\n`,
    );
    return EXIT_FAILURE;
  }
  let sock: Socket;
  try {
    sock = await connect(socketPath);
  } catch (err) {
    io.err(`tern debug-shell: cannot reach the guest of sandbox ${id} at ${socketPath}: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
  return relay(sock, streams);
}

function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(path);
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`));
    }, CONNECT_TIMEOUT_MS);
    s.once('connect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

const MARKER_HEAD = '[tern: guest shell exited with status ';

/** Where a marker may begin at the end of text (its length if none): that much is held back. */
export function partialMarkerStart(text: string): number {
  const at = text.lastIndexOf('[');
  if (at < 0 || text.length - at > MARKER_HEAD.length + 12) return text.length;
  const rest = text.slice(at);
  const possible =
    rest.length <= MARKER_HEAD.length ? MARKER_HEAD.startsWith(rest) : rest.startsWith(MARKER_HEAD) && /^-?\d*$/.test(rest.slice(MARKER_HEAD.length));
  return possible ? at : text.length;
}

/** Terminal <-> guest shell until the guest reports the shell's exit (its status) or the VM goes (1). */
function relay(sock: Socket, { stdin, stdout }: ShellStreams): Promise<number> {
  const raw = stdin.isTTY === true && typeof stdin.setRawMode === 'function';
  if (raw) stdin.setRawMode!(true);
  return new Promise((resolve) => {
    let tail = '';
    let done = false;
    const finish = (code: number) => {
      if (done) return;
      done = true;
      if (raw) stdin.setRawMode!(false);
      stdin.removeListener('data', onInput);
      stdin.removeListener('end', onEnd);
      stdin.pause();
      sock.destroy();
      resolve(code);
    };
    const onInput = (d: Buffer | string) => sock.write(d);
    // a pipe that ends: the shell exits with its last status, as sh does at EOF
    // (the guest shell edits lines itself, so the pty's VEOF is not reliable)
    const onEnd = () => sock.write('\nexit\n');
    sock.on('data', (d: Buffer) => {
      // the marker may straddle chunks: keep back a short tail
      const text = tail + d.toString('latin1');
      const m = EXIT_MARKER.exec(text);
      if (m) {
        stdout.write(Buffer.from(text.slice(0, m.index), 'latin1'));
        const status = Number(m[1]);
        finish(status < 0 ? EXIT_FAILURE : status);
        return;
      }
      const keep = partialMarkerStart(text);
      stdout.write(Buffer.from(text.slice(0, keep), 'latin1'));
      tail = text.slice(keep);
    });
    sock.on('close', () => {
      stdout.write(Buffer.from(tail, 'latin1'));
      finish(EXIT_FAILURE);
    });
    sock.on('error', () => undefined);
    stdin.on('data', onInput);
    stdin.on('end', onEnd);
    stdin.resume();
    // the guest starts a shell on the first byte of a connection
    sock.write('\n');
  });
}
