// tern: the operator's command line (one binary, subcommands). Flow: main ->
// runCli (run.ts) -> one of check (host checks), config (effective config,
// --validate), sandboxes/ls (VMs on this host), logs (one sandbox's shim
// log and guest console), factory (VM templates), gc (the layer cache), version. Exit codes: 0 ok, 1 failure reported, 2 usage error.
import { runCli } from './run';

runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  progress: process.stderr,
}).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`tern: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
