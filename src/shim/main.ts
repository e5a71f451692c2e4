// containerd-shim-tern-v2 entry point (the native launcher,
// helpers/tern-shim-launch.c, runs this bundle through loader.ts).
//   launch -> `start` as the launcher runs it: join the running shim or serve here,
//             the address said on fd 3                     (start-command.ts, serve.ts)
//   start  -> the same from Node: launch the daemon, print its address
//   serve  -> the daemon itself                            (serve.ts)
//   delete -> clean up after a dead shim, print DeleteResponse (delete.ts)
import { createLogger } from '../common/logging';
import { codeCacheState } from './code-cache';
import { messageOf } from '../common/errors';
import { parseArgs } from './args';
import { deleteAfterDeadShim } from './delete';
import { serve } from './serve';
import { signalReady } from './ready-signal';
import { runningShim, startShim } from './start-command';
import { VERSION } from './task-service';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), process.cwd());
  switch (args.action) {
    case 'version':
      process.stdout.write(`containerd-shim-tern-v2 ${VERSION}\ncode cache: ${codeCacheState() ?? 'not loaded through dist/shim.js'}\n`);
      return;
    case 'launch': {
      const address = await runningShim(args);
      if (address === undefined) return serve(args);
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
      await serve(args);
      return;
  }
}

main().catch((err) => {
  signalReady(`err ${messageOf(err)}`);
  process.stderr.write(`containerd-shim-tern-v2: ${messageOf(err)}\n`);
  process.exit(1);
});
