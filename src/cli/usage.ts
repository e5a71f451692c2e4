// Usage texts of the tern command and its subcommands.
import { CLI_GC_LOCK_WAIT_MS } from '../shim/layer-gc';
import { DESTROY_LOCK_WAIT_MS, FAILED_RETRY_MS } from '../shim/templates/store';

export const MAIN_USAGE = `Usage: tern <command> [options]

Commands:
  version                        print tern's version
  check [--json]                 check this host can run tern VMs (exit 1 if something would break a start)
  config [--json]                print the effective configuration with each key's source
  config --validate FILE         check a config file (exit 1 naming the bad key)
  sandboxes [--json]             list tern sandboxes (VMs) on this host (alias: ls)
  sandboxes inspect ID [--json]  one sandbox in detail
  logs ID [-f] [--json]          one sandbox's shim log and guest console, merged in time order
  debug-shell ID                 a root shell in the sandbox's guest (agent.debug_shell must be on)
  factory status [--json]        list the VM templates and whether pods use them
  factory init [--json]          build the VM template for the default guest shape
  factory destroy                remove every VM template and the templates' tmpfs
  gc [--json]                    remove unused layer images whose snapshot is gone (LRU past runtime.layer_cache_max_mib)
  install [--dry-run]            register tern with containerd (CRI handler "tern") and print the RuntimeClass
  pool serve                     run the warm pool of ready VMs (pool.size > 0), until SIGTERM
  pool status [--json]           the running pool: ready VMs, served and missed takes, failures
  metrics serve [--listen ADDR]  Prometheus endpoint (/metrics) for every tern sandbox on this host, until SIGTERM

Options:
  -c, --config PATH              config file (default: $TERN_CONFIG or /etc/tern/config.toml)
  -h, --help                     show help (also: tern help COMMAND, tern COMMAND --help)

Exit codes: 0 ok, 1 failure reported, 2 usage error.
`;

export const VERSION_USAGE = `Usage: tern version [--json]
`;

export const CHECK_USAGE = `Usage: tern check [--json] [--config PATH]

Checks CPU virtualization, the accelerator tern will use, /dev/kvm, vsock,
QEMU and its devices, the guest kernel/initrd/image, containerd, the shim
binary, the cgroup mode and free memory. Each line: ok, warn or fail.
Exits 1 if any check fails, 0 otherwise.
`;

export const CONFIG_USAGE = `Usage: tern config [--json] [--config PATH]
       tern config --validate FILE

Prints the effective configuration (defaults merged with the config file)
as TOML, each key commented with its source (default or file).
--validate checks FILE: prints "valid" (exit 0) or the error naming the key (exit 1).
`;

export const SANDBOXES_USAGE = `Usage: tern sandboxes [--json] [--config PATH]
       tern sandboxes inspect ID [-n NAMESPACE] [--json] [--config PATH]

Lists every tern sandbox from <state_dir>/sb/*/sandbox.json: namespace, id,
shim and QEMU pids (alive?), uptime, vCPUs, memory, host PSS of QEMU + shim.
inspect shows one sandbox with its containers and the end of its console log.
ID: the sandbox's id, one of its containers' ids, or its directory's name;
-n picks the namespace when the id is in several.
`;

export const DEBUG_SHELL_USAGE = `Usage: tern debug-shell ID [-n NAMESPACE] [--config PATH]

A root shell inside the sandbox's guest VM (not inside a container), for the
guest kernel log (dmesg), mounts and cgroups. It goes over the VM's own
debug port, which exists only when debug_shell = true under [agent] was set
when the VM started (off by default: the shell is root in the guest). On a
terminal the session is interactive (raw mode); input from a pipe runs and
ends with EOF. ID: the sandbox's id, one of its containers' ids, or its
directory's name; -n picks the namespace when the id is in several.
Exit status: the shell's; 1 when the sandbox has no debug shell or cannot be
reached.
`;

export const LOGS_USAGE = `Usage: tern logs ID [-n NAMESPACE] [--json] [--since DURATION]
                 [--source shim|guest|all] [-f|--follow] [--config PATH]

One sandbox's logs: the shim's (<state_dir>/sb/<hash>/shim.log, after the
rotated shim.log.1) and the guest console (the guest kernel's messages and
the tern agent's log lines), merged in time order. A kernel line's time is
worked out from the boot time the agent reports; a line without a time
(firmware, a kernel line before the agent has spoken) stays where it is in
its file. ID: the sandbox's id, one of its containers' ids, or its
directory's name; -n picks the namespace when the id is in several.
--json           one JSON object per line: pino lines as written plus "source";
                 other console lines as {source, kind, time, uptime, msg}
--since D        only lines of the last D (90s, 10m, 1h30m, 2d)
--source S       shim, guest or all (default)
-f, --follow     keep printing new lines (the files are read every 250 ms)
                 until interrupted or the sandbox is removed
Exits 1 when no sandbox matches ID.
`;

export const FACTORY_USAGE = `Usage: tern factory status [--json] [--config PATH]
       tern factory init [--json] [--config PATH]
       tern factory destroy [--json] [--config PATH]

VM templates: with factory.template on, pods start as copy-on-write clones
of a template VM built once per guest shape, kept in factory.template_dir.
status   lists the templates: key, state (ready, invalid, failed, building),
         guest memory, memory used on the tmpfs, detail; and whether pods use them.
init     builds the template for the configured guest shape (hypervisor.vcpus,
         hypervisor.memory_mib) unless it is there; exit 1 if it cannot be had.
         A shape whose build failed is not retried for ${FAILED_RETRY_MS / 60_000} minutes (destroy clears that).
destroy  removes every template, after a build in progress (waiting up to
         ${DESTROY_LOCK_WAIT_MS / 1000} s), and unmounts the tmpfs tern mounted for them.
`;

export const POOL_USAGE = `Usage: tern pool serve [--config PATH]
       tern pool status [--json] [--config PATH]

The warm pool: with pool.size > 0, \`tern pool serve\` keeps that many VMs
cloned from the template, booted and with their agent answering, and a
shim takes one instead of restoring a clone (pods with a network namespace
of their own still start as clones: a pooled VM runs outside it).
serve    runs in the foreground; on SIGTERM or SIGINT it stops every VM it still
         owns. A taken VM belongs to its pod from then on. An idle pooled VM
         powers itself off if the pool dies; a new pool removes what is left.
status   asks the running pool: ready VMs, VMs starting, takes served and
         missed, failures and the last one.
`;

export const GC_USAGE = `Usage: tern gc [--json] [--config PATH]

Collects the layer cache (<runtime.cache_dir>/layers: one erofs image per
image layer a container used), as each sandbox's teardown does. A layer image
goes when no running sandbox uses it and its snapshot directory is gone (or
is not the one it was made from, or it has no record of it); then, while the
cache is above runtime.layer_cache_max_mib (0 = no bound), unused images go
least recently used first. A layer a sandbox uses is never removed. Pins of
sandboxes that are gone, temp files of builds whose process died, and records
without an image go too; a build in progress is left alone.
Waits for a collection already running (up to ${CLI_GC_LOCK_WAIT_MS / 1000} s); exit 1 if it still runs.
`;

export const INSTALL_USAGE = `Usage: tern install [--dry-run] [--json] [--handler NAME] [--config PATH]
                    [--containerd-config PATH]

Registers tern with containerd: a marked block in containerd's config
(default /etc/containerd/config.toml, version 2; created if absent) defines
the CRI runtime handler NAME (default tern, runtime_type
io.containerd.tern.v2, ConfigPath = the tern config). Prints the Kubernetes
RuntimeClass manifest (handler NAME, the per-pod VM overhead). Running it
again changes nothing. --dry-run prints the change as a line diff and
writes nothing. containerd must be restarted to load the change.
`;

export const METRICS_USAGE = `Usage: tern metrics serve [--listen ADDR] [--config PATH]

A Prometheus endpoint (HTTP GET /metrics, text format) for every tern
sandbox on this host, read at each scrape; off unless run (e.g. as a
systemd unit), in the foreground until SIGTERM or SIGINT.
  --listen unix:/PATH     a unix socket (0600; default unix:<runtime.state_dir>/metrics.sock)
  --listen HOST:PORT      TCP on a loopback address only (127.0.0.1:9464, [::1]:9464):
                          the endpoint has no authentication
Per sandbox: start path, host PSS of QEMU and the shim, and each container's
guest memory, CPU, pids and OOM kills (the shim's Task.Stats, 2 s deadline
per shim: a slow one is skipped and counted in tern_scrape_errors_total).
Node-wide: start latency histograms by start path and phase, starts,
fallbacks and failures by reason (from <runtime.state_dir>/metrics/events.jsonl,
which the shims append to), and the warm pool's size, ready VMs and hit ratio.
`;
