// Differential testing of tern against runc: the same image, ctr options and
// probe script run under io.containerd.runc.v2 and io.containerd.tern.v2; the
// script prints delimited sections, which are split and normalized here, and
// the differences tern is allowed to have are listed in ONE table
// (EXPECTED_DIFFERENCES) with the reason for each.
// Spec fields ctr cannot set (user, groups, umask, rlimits, sysctls, masked
// and read-only paths) go through runWithSpec: `ctr containers create` makes
// the container (snapshot + default spec), the spec is replaced through
// containerd's Containers/Update gRPC call, and `ctr tasks start` runs it.
import { Client, Metadata, credentials, type ServiceError } from '@grpc/grpc-js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { socketPath } from '../../../src/shim/paths';
import type { Containerd } from './containerd.js';
import { diff, snapshot, type Snapshot } from './leaks.js';
import { run, type RunResult } from './run.js';

export const RUNTIMES = { runc: 'io.containerd.runc.v2', tern: 'io.containerd.tern.v2' } as const;
export type RuntimeName = keyof typeof RUNTIMES;

/** One allowed difference: lines of the probes matching `line` may differ (or exist on one side only). */
export interface ExpectedDifference {
  probes: string[];
  line: RegExp;
  reason: string;
}

/**
 * Every difference between runc and tern the suite accepts, and why. A
 * normalized line matching an entry is taken out of both sides before they
 * are compared; anything else must be identical.
 */
export const EXPECTED_DIFFERENCES: readonly ExpectedDifference[] = [
  {
    probes: ['ulimit'],
    line: /^(pending signals|max user processes) /,
    reason:
      'RLIMIT_SIGPENDING and RLIMIT_NPROC are not in the spec; their defaults scale with the RAM of the kernel that runs the process (the host vs the 512 MiB guest)',
  },
  {
    probes: ['hostname'],
    line: /.*/,
    reason:
      'ctr 1.6 sets no hostname: runc keeps the host\'s, under tern the container is inside the VM, whose hostname is "tern", or "tern-<sandbox id prefix>" for a clone of a template (a spec hostname is compared in the spec case)',
  },
  {
    probes: ['mountinfo', 'mountinfo-options'],
    line: /^\/proc\/(kcore|sysrq-trigger|latency_stats|timer_stats|sched_debug|scsi|asound) /,
    reason:
      'masked and read-only paths that do not exist are skipped by both runtimes; this host kernel has no /proc/kcore or /proc/sysrq-trigger, the guest kernel has them',
  },
  {
    probes: ['masked'],
    line: /^(cat \/proc\/kcore|write \/proc\/sysrq-trigger):/,
    reason:
      'the host kernel has no /proc/kcore or /proc/sysrq-trigger (they fail as missing under runc); in the guest they exist and are masked (reads empty) or read-only (EROFS)',
  },
  {
    probes: ['privileged-dev'],
    line: /.*/,
    reason:
      "privileged inside a VM means the guest's devices: tern creates the spec's (host) device paths that exist in the guest, with the guest's numbers, and leaves the host-only ones out; the standard nodes are compared separately",
  },
  {
    probes: ['privileged-mountinfo'],
    line: /^\/sys\/(kernel\/security|fs\/fuse\/connections|fs\/pstore|fs\/bpf|kernel\/debug|kernel\/tracing|kernel\/config|firmware\/efi\/efivars) /,
    reason:
      'a privileged container gets /sys with its submounts recursively from the kernel that runs it: the host and the guest mount different pseudo filesystems under /sys',
  },
  {
    probes: ['mountinfo-options'],
    line: /^\/sys\/fs\/cgroup[ /]/,
    reason:
      'a "cgroup" mount shows the hierarchy of the kernel that runs the container: this host is cgroup v1 (a tmpfs with one mount per controller), the guest is cgroup v2 only (one cgroup2 mount); the memory limit itself is compared',
  },
  {
    probes: ['uts'],
    line: /^(\(none\)|diff\.example)$/,
    reason: "runc 1.1.5 ignores the spec's domainname (runc 1.2 added it); tern sets it as the OCI runtime spec asks",
  },
];

/** Section markers printed by the probe script. */
const BEGIN = '@@@ ';
const END = '@@@ end ';

/** One named probe: a shell fragment whose output (and exit status) forms a section. */
export interface Probe {
  name: string;
  sh: string;
}

/** A shell script that runs every probe and prints `@@@ name`, its output, `@@@ end name rc`. */
export function probeScript(probes: Probe[], tail = ''): string {
  const parts = probes.map((p) => `echo '${BEGIN}${p.name}'; { ${p.sh}; } 2>&1; echo "${END}${p.name} $?"`);
  return [...parts, tail].filter(Boolean).join('\n');
}

export interface Section {
  out: string;
  rc: number;
}

/** Splits probe output into sections by name (CRs from a tty removed). */
export function splitSections(stdout: string): Record<string, Section> {
  const sections: Record<string, Section> = {};
  let name: string | undefined;
  let lines: string[] = [];
  for (const line of stdout.replace(/\r/g, '').split('\n')) {
    // a terminal may echo control characters (e.g. ^@) in front of a marker
    const at = line.indexOf(BEGIN);
    const raw = at > 0 ? line.slice(at) : line;
    if (raw.startsWith(END)) {
      const [n, rc] = raw.slice(END.length).split(' ');
      if (name !== undefined && n === name) sections[name] = { out: lines.join('\n'), rc: Number(rc) };
      name = undefined;
    } else if (raw.startsWith(BEGIN)) {
      name = raw.slice(BEGIN.length);
      lines = [];
    } else if (name !== undefined) lines.push(raw);
  }
  return sections;
}

// ---------- probes and normalizers ----------

export const PROBES = {
  id: { name: 'id', sh: 'id' },
  status: { name: 'status', sh: 'grep -E "^(Cap|NoNewPrivs|Seccomp)" /proc/self/status' },
  ulimit: { name: 'ulimit', sh: 'ulimit -a' },
  env: { name: 'env', sh: 'env | sort' },
  pwd: { name: 'pwd', sh: 'pwd' },
  hostname: { name: 'hostname', sh: 'hostname' },
  umask: { name: 'umask', sh: 'umask' },
  mountinfo: { name: 'mountinfo', sh: 'cat /proc/self/mountinfo' },
  dev: { name: 'dev', sh: 'ls -la /dev' },
  masked: {
    name: 'masked',
    // each attempt prints "<what>: rc=<n> <first error line>"
    sh: [
      ['write /proc/sysrq-trigger', 'echo x > /proc/sysrq-trigger'],
      ['cat /proc/kcore', 'cat /proc/kcore | wc -c'],
      ['cat /proc/keys', 'cat /proc/keys | wc -c'],
      ['cat /proc/timer_list', 'cat /proc/timer_list | wc -c'],
      ['write /proc/keys', 'echo x > /proc/keys'],
      ['ls /proc/acpi', 'ls -A /proc/acpi | wc -l'],
      ['touch /proc/acpi/x', 'touch /proc/acpi/x'],
      ['ls /sys/firmware', 'ls -A /sys/firmware | wc -l'],
      ['touch /sys/firmware/x', 'touch /sys/firmware/x'],
      ['write /proc/sys/kernel/domainname', 'echo x > /proc/sys/kernel/domainname'],
      ['write /proc/irq/default_smp_affinity', 'echo 1 > /proc/irq/default_smp_affinity'],
      ['mkdir /proc/bus/x', 'mkdir /proc/bus/x'],
    ]
      .map(([what, cmd]) => `o=$( { ${cmd}; } 2>&1); echo "${what}: rc=$? $(echo "$o" | head -n1)"`)
      .join('; '),
  },
  /** The memory limit from the container's own cgroup, v1 (runc on this host) or v2 (the guest). */
  memoryLimit: {
    name: 'memory-limit',
    sh:
      'if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then cat /sys/fs/cgroup/memory/memory.limit_in_bytes; ' +
      'else cat "/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup)/memory.max"; fi',
  },
} satisfies Record<string, Probe>;

const lines = (s: string) => s.split('\n').filter((l) => l.length > 0);

/**
 * /proc/self/mountinfo -> sorted "mount-point per-mount-options fstype" lines.
 * Sources, ids, superblock options and order are left out: they name host or
 * guest objects, not what the container sees.
 */
export function normalizeMountinfo(text: string): string[] {
  return lines(text)
    .map((l) => {
      const f = l.split(' ');
      const dash = f.indexOf('-');
      return `${f[4]} ${f[5]} ${f[dash + 1]}`;
    })
    .sort();
}

/** `ls -la /dev` -> sorted "name type [major:minor]" (devices) or "name type" (others); . and .. dropped. */
export function normalizeDevList(text: string): string[] {
  const out: string[] = [];
  for (const l of lines(text)) {
    if (l.startsWith('total')) continue;
    const m = /^(\S)\S*\s+\d+\s+\S+\s+\S+\s+(?:(\d+),\s+(\d+)|\d+)\s+\S+\s+\d+\s+[\d:]+\s+(.+)$/.exec(l);
    if (!m) {
      out.push(`unparsed: ${l}`);
      continue;
    }
    const [, type, major, minor, rest] = m;
    const name = rest!.split(' -> ')[0]!;
    if (name === '.' || name === '..') continue;
    const link = rest!.includes(' -> ') ? ` -> ${rest!.split(' -> ')[1]}` : '';
    out.push(major !== undefined ? `${name} ${type} ${major}:${minor}` : `${name} ${type}${link}`);
  }
  return out.sort();
}

/** Lines of a section, sorted when order does not matter. */
export function normalizeLines(text: string, sort = false): string[] {
  const l = lines(text).map((s) => s.replace(/\s+$/, ''));
  return sort ? l.sort() : l;
}

export interface Comparison {
  runc: string[];
  tern: string[];
  /** Lines taken out because an expected difference covers them. */
  excused: { runc: string[]; tern: string[]; reasons: string[] };
}

/** Removes the lines an expected difference covers from both sides. */
export function compareNormalized(probe: string, runcLines: string[], ternLines: string[]): Comparison {
  const rules = EXPECTED_DIFFERENCES.filter((d) => d.probes.includes(probe));
  const excused = { runc: [] as string[], tern: [] as string[], reasons: [] as string[] };
  const keep = (side: 'runc' | 'tern') => (l: string) => {
    const rule = rules.find((r) => r.line.test(l));
    if (!rule) return true;
    excused[side].push(l);
    if (!excused.reasons.includes(rule.reason)) excused.reasons.push(rule.reason);
    return false;
  };
  return { runc: runcLines.filter(keep('runc')), tern: ternLines.filter(keep('tern')), excused };
}

// ---------- running ----------

/** Every container id this module ran, to attribute leftovers to this suite. */
const usedIds = new Set<string>();

/**
 * A tern state directory of the suite's own (via a TERN_CONFIG file given to
 * containerd), so that sandboxes of other work on the host never count as ours.
 */
export function privateTernState(): { dir: string; env: Record<string, string>; cleanup: () => void } {
  const dir = mkdtempSync('/run/tern-diff-');
  const configPath = join(dir, 'config.toml');
  writeFileSync(configPath, `[runtime]\nstate_dir = ${JSON.stringify(join(dir, 'state'))}\n`);
  return { dir, env: { TERN_CONFIG: configPath }, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Like expectNoLeaks, but only for what this suite can have left: processes
 * and mounts in scope, and files, cgroups, interfaces and namespaces that name
 * one of the markers, the containers run here, or their shim sockets.
 */
export async function expectNoOwnLeaks(c: Containerd, before: Snapshot, markers: string[], timeoutMs = 20_000): Promise<void> {
  const own = [...markers, ...[...usedIds].flatMap((id) => [id, socketPath(c.address, c.namespace, id)])];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const leaks = diff(before, await snapshot({ scope: markers })).filter(
      (l) => l.startsWith('process ') || l.startsWith('mount ') || own.some((m) => l.includes(m)),
    );
    if (leaks.length === 0) return;
    if (Date.now() >= deadline) throw new Error(`leaked resources (${leaks.length}):\n  ${leaks.join('\n  ')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface PairResult {
  runc: RunResult;
  tern: RunResult;
  sections: Record<RuntimeName, Record<string, Section>>;
}

/** Below vitest's per-test timeout, so a stuck run fails its own case and c.stop() clears it. */
const ctrTimeoutMs = 150_000;

/** `ctr run --rm` of the same image and options under both runtimes, concurrently. */
export async function runPair(
  c: Containerd,
  name: string,
  ctrOptions: string[],
  image: string,
  script: string,
  opts: { tty?: boolean } = {},
): Promise<PairResult> {
  const one = (rt: RuntimeName) => {
    usedIds.add(`${name}-${rt}`);
    const args = ['run', '--rm', '--runtime', RUNTIMES[rt], ...ctrOptions, image, `${name}-${rt}`, 'sh', '-c', script];
    if (!opts.tty) return c.ctr(args, { timeoutMs: ctrTimeoutMs });
    // ctr -t needs a terminal of its own: script(1) gives it one
    const cmd = ['ctr', '--address', c.address, '-n', c.namespace, ...args].map(shellQuote).join(' ');
    return run('script', ['-qec', cmd, '/dev/null'], { timeoutMs: ctrTimeoutMs, input: '' });
  };
  const [runc, tern] = await Promise.all([one('runc'), one('tern')]);
  return { runc, tern, sections: { runc: splitSections(runc.stdout), tern: splitSections(tern.stdout) } };
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The OCI spec type containerd stores containers' specs under. */
const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';

const containersProto = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
    FieldMask: { fields: { paths: { rule: 'repeated', type: 'string', id: 1 } } },
    Container: { fields: { id: { type: 'string', id: 1 }, spec: { type: 'Any', id: 5 } } },
    UpdateContainerRequest: { fields: { container: { type: 'Container', id: 1 }, update_mask: { type: 'FieldMask', id: 2 } } },
  },
});
const UpdateRequest = containersProto.lookupType('UpdateContainerRequest');

/** Containers/Update with mask ["spec"]: replaces a container's OCI spec. */
async function updateSpec(c: Containerd, id: string, spec: unknown): Promise<void> {
  const client = new Client(`unix://${c.address}`, credentials.createInsecure());
  try {
    const md = new Metadata();
    md.set('containerd-namespace', c.namespace);
    const req = UpdateRequest.encode(
      UpdateRequest.create({
        container: { id, spec: { type_url: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(spec)) } },
        update_mask: { paths: ['spec'] },
      }),
    ).finish();
    await new Promise<void>((resolve, reject) => {
      client.makeUnaryRequest(
        '/containerd.services.containers.v1.Containers/Update',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(req),
        md,
        { deadline: Date.now() + 30_000 },
        (err: ServiceError | null) => (err ? reject(new Error(`Containers/Update ${id}: ${err.message}`)) : resolve()),
      );
    });
  } finally {
    client.close();
  }
}

/** An OCI spec as JSON, loosely typed for editing. */
// biome-ignore lint/suspicious/noExplicitAny: an OCI spec edited freely by tests
export type SpecJson = Record<string, any>;

/**
 * Create a container from the image with ctr's default spec, let `edit`
 * change the spec, store it, run the task to completion (stdio attached) and
 * remove the container. Returns what `ctr tasks start` printed and its exit code.
 */
export async function runWithSpec(
  c: Containerd,
  runtime: RuntimeName,
  image: string,
  id: string,
  args: string[],
  edit: (spec: SpecJson) => void,
): Promise<RunResult> {
  usedIds.add(id);
  // the command goes into the spec: `ctr containers create` would parse a "-c" after the id as its --config
  const created = await c.ctr(['containers', 'create', '--runtime', RUNTIMES[runtime], image, id], { timeoutMs: 60_000 });
  if (created.code !== 0) throw new Error(`ctr containers create ${id}: ${created.stderr}`);
  try {
    const info = await c.ctr(['containers', 'info', '--spec', id]);
    if (info.code !== 0) throw new Error(`ctr containers info ${id}: ${info.stderr}`);
    const spec = JSON.parse(info.stdout) as SpecJson;
    spec.process.args = args;
    edit(spec);
    await updateSpec(c, id, spec);
    return await c.ctr(['tasks', 'start', id], { timeoutMs: ctrTimeoutMs });
  } finally {
    await c.ctr(['tasks', 'delete', '-f', id], { timeoutMs: 60_000 }).catch(() => undefined);
    await c.ctr(['containers', 'delete', id], { timeoutMs: 60_000 }).catch(() => undefined);
  }
}

/** runWithSpec under both runtimes, concurrently. */
export async function runPairWithSpec(c: Containerd, name: string, image: string, script: string, edit: (spec: SpecJson) => void): Promise<PairResult> {
  const [runc, tern] = await Promise.all((['runc', 'tern'] as const).map((rt) => runWithSpec(c, rt, image, `${name}-${rt}`, ['sh', '-c', script], edit)));
  return { runc: runc!, tern: tern!, sections: { runc: splitSections(runc!.stdout), tern: splitSections(tern!.stdout) } };
}
