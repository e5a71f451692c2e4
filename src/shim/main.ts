// containerd-shim-tern-v2 entry point.
//   start  -> launch the daemon, print its address        (start-command.ts)
//   serve  -> the daemon itself                            (serve.ts)
//   delete -> clean up after a dead shim, print DeleteResponse (delete.ts)
import { createLogger } from '../common/logging';
import { messageOf } from '../common/errors';
import { parseArgs } from './args';
import { deleteAfterDeadShim } from './delete';
import { serve } from './serve';
import { startShim } from './start-command';
import { VERSION } from './task-service';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), process.cwd());
  switch (args.action) {
    case 'version':
      process.stdout.write(`containerd-shim-tern-v2 ${VERSION}\n`);
      return;
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
  process.stderr.write(`containerd-shim-tern-v2: ${messageOf(err)}\n`);
  process.exit(1);
});
