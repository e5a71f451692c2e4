// tern's configuration: /etc/tern/config.toml (TOML), every key optional.
// containerd's runtime option ConfigPath (runtimeoptions.v1.Options.config_path)
// or TERN_CONFIG overrides the path. Unknown keys are rejected so typos surface.
import { readFileSync } from 'node:fs';
import { parse } from 'smol-toml';
import { invalidArgument } from './errors';
import { isLogLevel, LOG_LEVELS, type LogLevel } from './log-level';
import { checkRunAsSyntax } from './run-as';
import { DEFAULT_TCG_CPU_MODEL } from './tcg-cpu-model';

export const DEFAULT_CONFIG_PATH = '/etc/tern/config.toml';

export interface TernConfig {
  hypervisor: {
    driver: string;
    binary: string;
    accel: 'auto' | 'kvm' | 'tcg';
    vcpus: number;
    memoryMiB: number;
    kernel: string;
    initrd: string;
    image: string;
    kernelParams: string[];
    hotplugSlots: number;
    /** Memory hot-plug: a VM may grow to this many MiB when a container's limit is raised (0 or not above memoryMiB: fixed size). Part of the template key. */
    maxMemoryMiB: number;
    /** CPU hot-plug: a VM may grow to this many vCPUs when a container's CPU quota is raised (0: as many as the host has). Part of the template key. */
    maxVcpus: number;
    /** Under TCG, QEMU's translation cache in MiB (0 = QEMU's default): a density lever. */
    tcgTbSizeMiB: number;
    tcgCpuModel: string;
    /**
     * QEMU drops to this unprivileged user (a name, or "uid:gid") once it has
     * built the machine; empty: it stays root. Not part of the template key.
     */
    runAs: string;
  };
  agent: {
    /** Deadline for a cold-booted guest's agent to answer (TCG boots take seconds). */
    bootTimeoutMs: number;
    /** Deadline for an ordinary agent call. */
    callTimeoutMs: number;
    /** A running VM's agent is checked this often (0 = never). */
    healthIntervalMs: number;
    /** Deadline of one health check. */
    healthTimeoutMs: number;
    /** Failed checks in a row after which the guest counts as lost: containers exit, the VM is stopped. */
    healthFailures: number;
    /** The guest agent's log level (its lines reach the host on the guest console); on the kernel command line, so part of the template key. */
    logLevel: LogLevel;
    /** A root shell in the guest (not in a container) for `tern debug-shell`, on a port of its own; part of the template key. */
    debugShell: boolean;
    /**
     * Let the agent's V8 compile JavaScript to machine code. Off by default: under
     * TCG, code V8 compiles must be translated again by QEMU in every clone and
     * sits in its translation cache. On the kernel command line, so part of the template key.
     */
    jit: boolean;
  };
  runtime: {
    stateDir: string;
    cacheDir: string;
    logLevel: string;
    /** Wait this long for a process's output to drain after it exits before reporting the exit. */
    ioDrainTimeoutMs: number;
    /** Cap of the shim's own log file (<sandbox dir>/shim.log, rotated once to shim.log.1); 0 = no file. */
    shimLogMaxKiB: number;
    /**
     * Bound of the layer cache (<cacheDir>/layers): a collection (at a
     * sandbox's teardown, `tern gc`) removes unused layer images least
     * recently used first until the cache fits; 0 = no bound (only layers
     * whose snapshot is gone are removed).
     */
    layerCacheMaxMiB: number;
    /**
     * Each container's writable layer is a sparse ext4 file of its own under
     * <cacheDir>/scratch, attached to the VM as a disk: the most a container
     * may be given (its limit, below, or the annotation).
     */
    rootfsDeviceMiB: number;
    /** What a container may write to its root filesystem (ENOSPC past it); 0 = rootfs_device_mib. */
    rootfsLimitMiB: number;
    /**
     * Read-only disks every VM has from boot for image layers (0 = none: each
     * layer is hot-plugged). A layer goes in one with no PCI hot-plug; layers
     * beyond them, or larger than layer_slot_mib, are hot-plugged.
     */
    layerSlots: number;
    /** Each layer slot's size: a layer image is padded to it (sparse), the largest layer a slot takes. */
    layerSlotMiB: number;
    /**
     * How many pods of the host may boot their VM and create their first
     * container at once (src/shim/start-slots.ts); the others wait their
     * turn. 0 = one more than the host's CPUs.
     */
    startSlots: number;
  };
  factory: {
    /**
     * Start VMs as copy-on-write clones of a VM template (built once per
     * guest shape, on first use) instead of booting each one; a clone that
     * fails falls back to a cold boot.
     */
    template: boolean;
    /** Where templates live (a tmpfs is mounted there if it is not on one). */
    templateDir: string;
  };
  pool: {
    /**
     * Warm pool: how many ready VMs `tern pool serve` keeps (cloned from the
     * template, agent up) for shims to take instead of restoring one. 0 = off:
     * shims do not ask.
     */
    size: number;
    /** The pool process's socket, where shims ask for a VM. */
    socket: string;
    /** Where pooled VMs live (one directory each, handed over with the VM). */
    dir: string;
    /** The pool does not start a VM while the host has less available memory than this plus the VM's size. */
    reserveMiB: number;
  };
  metrics: {
    /**
     * Bound of <stateDir>/metrics/events.jsonl, the shims' record of starts
     * that `tern metrics` reads: past it the file is renamed to .1 (the
     * previous .1 is dropped). 0 = shims record nothing.
     */
    eventsMaxMiB: number;
  };
}

const GUEST = '/var/lib/tern/guest/current';

export function defaultConfig(): TernConfig {
  return {
    hypervisor: {
      driver: 'qemu',
      binary: 'qemu-system-x86_64',
      accel: 'auto',
      vcpus: 1,
      memoryMiB: 512,
      // Uncompressed, booted through its PVH entry: no decompressor under emulation.
      kernel: `${GUEST}/vmlinux`,
      initrd: `${GUEST}/initrd.img`,
      image: `${GUEST}/guest.erofs`,
      kernelParams: [],
      hotplugSlots: 8,
      maxMemoryMiB: 4096,
      maxVcpus: 0,
      // Measured here (template clones, 10 idle pods): 32 saves 8-10 MiB PSS per pod; 24 saves 18 MiB but a start takes ~45% longer.
      tcgTbSizeMiB: 0,
      tcgCpuModel: DEFAULT_TCG_CPU_MODEL,
      runAs: '',
    },
    // Health: a check every 30 s that gets no answer for 30 s, three times in a
    // row with no other answer meanwhile. A check wakes an idle guest: under
    // TCG it cost ~13 ms of host CPU (QEMU and shim), so every 10 s it was two
    // thirds of an idle pod's CPU; a hung guest is still found within 3 min.
    agent: {
      bootTimeoutMs: 90_000,
      callTimeoutMs: 30_000,
      healthIntervalMs: 30_000,
      healthTimeoutMs: 30_000,
      healthFailures: 3,
      logLevel: 'info',
      debugShell: false,
      jit: false,
    },
    runtime: {
      stateDir: '/run/tern',
      cacheDir: '/var/lib/tern',
      logLevel: 'info',
      ioDrainTimeoutMs: 2_000,
      shimLogMaxKiB: 4096,
      layerCacheMaxMiB: 0,
      rootfsDeviceMiB: 10_240,
      rootfsLimitMiB: 0,
      layerSlots: 4,
      layerSlotMiB: 4096,
      startSlots: 0,
    },
    factory: { template: true, templateDir: '/run/tern/templates' },
    pool: { size: 0, socket: '/run/tern/pool.sock', dir: '/run/tern/pool', reserveMiB: 1024 },
    // A start is ~250 bytes: 4 MiB holds the last ~16k starts (twice that with the rotated file).
    metrics: { eventsMaxMiB: 4 },
  };
}

// TOML key (snake_case) -> config key, per section, with the expected type.
type Kind = 'string' | 'number' | 'boolean' | 'string[]';
/** TOML key (snake_case) -> [config field, type], per section, in documentation order. */
export const CONFIG_SCHEMA: Record<keyof TernConfig, Record<string, [field: string, kind: Kind]>> = {
  hypervisor: {
    driver: ['driver', 'string'],
    binary: ['binary', 'string'],
    accel: ['accel', 'string'],
    vcpus: ['vcpus', 'number'],
    memory_mib: ['memoryMiB', 'number'],
    kernel: ['kernel', 'string'],
    initrd: ['initrd', 'string'],
    image: ['image', 'string'],
    kernel_params: ['kernelParams', 'string[]'],
    hotplug_slots: ['hotplugSlots', 'number'],
    max_memory_mib: ['maxMemoryMiB', 'number'],
    max_vcpus: ['maxVcpus', 'number'],
    tcg_tb_size_mib: ['tcgTbSizeMiB', 'number'],
    tcg_cpu_model: ['tcgCpuModel', 'string'],
    run_as: ['runAs', 'string'],
  },
  agent: {
    boot_timeout_ms: ['bootTimeoutMs', 'number'],
    call_timeout_ms: ['callTimeoutMs', 'number'],
    health_interval_ms: ['healthIntervalMs', 'number'],
    health_timeout_ms: ['healthTimeoutMs', 'number'],
    health_failures: ['healthFailures', 'number'],
    log_level: ['logLevel', 'string'],
    debug_shell: ['debugShell', 'boolean'],
    jit: ['jit', 'boolean'],
  },
  runtime: {
    state_dir: ['stateDir', 'string'],
    cache_dir: ['cacheDir', 'string'],
    log_level: ['logLevel', 'string'],
    io_drain_timeout_ms: ['ioDrainTimeoutMs', 'number'],
    shim_log_max_kib: ['shimLogMaxKiB', 'number'],
    layer_cache_max_mib: ['layerCacheMaxMiB', 'number'],
    rootfs_device_mib: ['rootfsDeviceMiB', 'number'],
    rootfs_limit_mib: ['rootfsLimitMiB', 'number'],
    layer_slots: ['layerSlots', 'number'],
    layer_slot_mib: ['layerSlotMiB', 'number'],
    start_slots: ['startSlots', 'number'],
  },
  factory: {
    template: ['template', 'boolean'],
    template_dir: ['templateDir', 'string'],
  },
  pool: {
    size: ['size', 'number'],
    socket: ['socket', 'string'],
    dir: ['dir', 'string'],
    reserve_mib: ['reserveMiB', 'number'],
  },
  metrics: {
    events_max_mib: ['eventsMaxMiB', 'number'],
  },
};

/** A TOML value as an error message shows it (shortened). */
function showValue(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}

function checkKind(v: unknown, kind: Kind): boolean {
  if (kind === 'string') return typeof v === 'string';
  if (kind === 'number') return typeof v === 'number' && Number.isFinite(v) && v >= 0;
  if (kind === 'boolean') return typeof v === 'boolean';
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** Parses TOML text into a full config (defaults for what is absent). */
export function parseConfig(text: string, source = 'config'): TernConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parse(text) as Record<string, unknown>;
  } catch (err) {
    throw invalidArgument(`${source}: invalid TOML: ${(err as Error).message}`);
  }
  const cfg = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
  for (const [section, body] of Object.entries(doc)) {
    const schema = (CONFIG_SCHEMA as Record<string, Record<string, [string, Kind]>>)[section];
    if (!schema) throw invalidArgument(`${source}: unknown section [${section}]`);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw invalidArgument(`${source}: [${section}] must be a table`);
    }
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      const entry = schema[key];
      if (!entry) throw invalidArgument(`${source}: unknown key ${section}.${key}`);
      const [name, kind] = entry;
      if (!checkKind(value, kind))
        throw invalidArgument(`${source}: ${section}.${key} must be a ${kind}${kind === 'number' ? ' (0 or more)' : ''}, not ${showValue(value)}`);
      cfg[section]![name] = value;
    }
  }
  const out = cfg as unknown as TernConfig;
  if (!['auto', 'kvm', 'tcg'].includes(out.hypervisor.accel)) {
    throw invalidArgument(`${source}: hypervisor.accel must be "auto", "kvm" or "tcg"`);
  }
  if (!out.factory.templateDir.startsWith('/')) throw invalidArgument(`${source}: factory.template_dir must be an absolute path`);
  if (!out.pool.socket.startsWith('/')) throw invalidArgument(`${source}: pool.socket must be an absolute path`);
  if (!out.pool.dir.startsWith('/')) throw invalidArgument(`${source}: pool.dir must be an absolute path`);
  if (!Number.isInteger(out.pool.size) || out.pool.size > 64) throw invalidArgument(`${source}: pool.size must be an integer 0..64`);
  for (const [key, ms] of [
    ['agent.call_timeout_ms', out.agent.callTimeoutMs],
    ['agent.boot_timeout_ms', out.agent.bootTimeoutMs],
  ] as const) {
    if (ms < 1) throw invalidArgument(`${source}: ${key} must be at least 1 (every agent call has a deadline)`);
  }
  if (!Number.isInteger(out.agent.healthFailures) || out.agent.healthFailures < 1)
    throw invalidArgument(`${source}: agent.health_failures must be an integer >= 1`);
  if (out.agent.healthIntervalMs > 0 && out.agent.healthTimeoutMs < 100) throw invalidArgument(`${source}: agent.health_timeout_ms must be at least 100`);
  if (!/^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$/.test(out.hypervisor.tcgCpuModel))
    throw invalidArgument(
      `${source}: hypervisor.tcg_cpu_model must be a QEMU CPU model, optionally with ,+feature/,-feature (e.g. "max", "qemu64"), not ${JSON.stringify(out.hypervisor.tcgCpuModel)}`,
    );
  if (out.hypervisor.vcpus < 1) throw invalidArgument(`${source}: hypervisor.vcpus must be at least 1`);
  if (out.hypervisor.memoryMiB < 128) throw invalidArgument(`${source}: hypervisor.memory_mib must be at least 128`);
  checkRunAsSyntax(out.hypervisor.runAs, source);
  for (const [key, level] of [
    ['runtime.log_level', out.runtime.logLevel],
    ['agent.log_level', out.agent.logLevel],
  ] as const) {
    if (!isLogLevel(level)) throw invalidArgument(`${source}: ${key} must be one of ${LOG_LEVELS.join(', ')}`);
  }
  if (!Number.isInteger(out.runtime.shimLogMaxKiB)) throw invalidArgument(`${source}: runtime.shim_log_max_kib must be an integer`);
  if (out.runtime.shimLogMaxKiB > 0 && out.runtime.shimLogMaxKiB < 64)
    throw invalidArgument(`${source}: runtime.shim_log_max_kib must be 0 (no file) or at least 64`);
  if (!Number.isInteger(out.runtime.layerCacheMaxMiB))
    throw invalidArgument(
      `${source}: runtime.layer_cache_max_mib must be a whole number of MiB (0 = no bound), not ${showValue(out.runtime.layerCacheMaxMiB)}`,
    );
  const { rootfsDeviceMiB, rootfsLimitMiB } = out.runtime;
  if (!Number.isInteger(rootfsDeviceMiB) || rootfsDeviceMiB < MIN_ROOTFS_MIB)
    throw invalidArgument(`${source}: runtime.rootfs_device_mib must be a whole number of MiB, at least ${MIN_ROOTFS_MIB}, not ${showValue(rootfsDeviceMiB)}`);
  if (!Number.isInteger(rootfsLimitMiB) || rootfsLimitMiB < 0 || (rootfsLimitMiB > 0 && rootfsLimitMiB < MIN_ROOTFS_MIB))
    throw invalidArgument(
      `${source}: runtime.rootfs_limit_mib must be 0 (= rootfs_device_mib) or a whole number of MiB, at least ${MIN_ROOTFS_MIB}, not ${showValue(rootfsLimitMiB)}`,
    );
  if (rootfsLimitMiB > rootfsDeviceMiB)
    throw invalidArgument(`${source}: runtime.rootfs_limit_mib ${rootfsLimitMiB} is larger than runtime.rootfs_device_mib ${rootfsDeviceMiB}`);
  const { layerSlots, layerSlotMiB } = out.runtime;
  if (!Number.isInteger(layerSlots) || layerSlots < 0 || layerSlots > MAX_LAYER_SLOTS)
    throw invalidArgument(`${source}: runtime.layer_slots must be a whole number from 0 to ${MAX_LAYER_SLOTS}, not ${showValue(layerSlots)}`);
  if (!Number.isInteger(layerSlotMiB) || layerSlotMiB < 1)
    throw invalidArgument(`${source}: runtime.layer_slot_mib must be a whole number of MiB, at least 1, not ${showValue(layerSlotMiB)}`);
  if (!Number.isInteger(out.runtime.startSlots))
    throw invalidArgument(
      `${source}: runtime.start_slots must be a whole number (0 = one more than the host's CPUs), not ${showValue(out.runtime.startSlots)}`,
    );
  return out;
}

/** Most layer slots a VM may have: each is a PCI device on the root bus, beside the others and the hot-plug ports. */
export const MAX_LAYER_SLOTS = 8;

/** The smallest writable layer a container is given (an ext4 of less holds little beyond its own metadata). */
export const MIN_ROOTFS_MIB = 16;

/** Loads the config file; a missing file at the default path means all defaults, a missing explicit path is an error. */
export function loadConfig(path?: string): TernConfig {
  const explicit = path ?? process.env.TERN_CONFIG;
  const file = explicit || DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !explicit) return defaultConfig();
    throw invalidArgument(`cannot read tern config ${file}: ${(err as Error).message}`);
  }
  return parseConfig(text, file);
}
