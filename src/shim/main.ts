// containerd-shim-tern-v2 entry point (the native launcher,
// helpers/tern-shim-launch.c, runs this bundle through loader.ts).
//   launch -> `start` as the launcher runs it when no shim process takes the pod:
//             join the pod's running shim, or become the shim process that
//             serves it (and later pods), the address said on fd 3
//                                                          (start-command.ts, shim-daemon.ts)
//   start  -> the same from Node: launch the daemon, print its address
//   serve  -> the shim process itself, for its first pod only (shim-daemon.ts)
//   delete -> clean up after a dead shim, print DeleteResponse (delete.ts)
import { createLogger } from '../common/logging';
import { codeCacheState } from './code-cache';
import { messageOf } from '../common/errors';
import { parseArgs, type ShimArgs } from './args';
import { deleteAfterDeadShim } from './delete';
import { CONTROL_SOCKET_ENV, ShimDaemon } from './shim-daemon';
import { signalReady } from './ready-signal';
import { runningShim, startShim } from './start-command';
import { VERSION } from './task-service';

/** Becomes the shim process serving this pod; its word on fd 3 says the address or why not. */
async function becomeShim(args: ShimArgs, controlSocket: string | undefined): Promise<void> {
  // Not passed on to QEMU and the helpers.
  delete process.env[CONTROL_SOCKET_ENV];
  // The process outlives this pod's bundle (its working directory until now) while it serves others.
  process.chdir('/');
  const daemon = new ShimDaemon(controlSocket);
  daemon.watchProcess();
  try {
    signalReady(`ok ${await daemon.serveFirst(args)}`);
  } catch (err) {
    signalReady(`err ${messageOf(err)}`);
    process.exit(1);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), process.cwd());
  switch (args.action) {
    case 'version':
      process.stdout.write(`containerd-shim-tern-v2 ${VERSION}\ncode cache: ${codeCacheState() ?? 'not loaded through dist/shim.js'}\n`);
      return;
    case 'launch': {
      const address = await runningShim(args);
      if (address === undefined) return becomeShim(args, process.env[CONTROL_SOCKET_ENV]);
      signalReady(`ok ${address}`);
      process.exit(0);
      return;
    }
    case 'start': {
      const address = await startShim(args, process.argv.slice(0, 2));
      process.stdout.write(address);
      process.exit(0);
      return;
    }
    case 'delete': {
      const log = createLogger({ name: 'containerd-shim-tern-v2', destination: { fd: 2, mode: 'drop-when-busy' } });
      const out = await deleteAfterDeadShim(args, log);
      process.stdout.write(out, () => process.exit(0));
      return;
    }
    case 'serve':
      return becomeShim(args, undefined);
  }
}

main().catch((err) => {
  signalReady(`err ${messageOf(err)}`);
  process.stderr.write(`containerd-shim-tern-v2: ${messageOf(err)}\n`);
  process.exit(1);
});
