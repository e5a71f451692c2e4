// What `tern install` changes, computed without touching anything: a block
// in containerd's main config (version 2) that registers the tern runtime as
// a CRI runtime handler (usable by ctr as io.containerd.tern.v2 anyway), and
// the Kubernetes RuntimeClass manifest to apply. The block sits between
// marker lines and is replaced, never duplicated, so a second run changes
// nothing. (containerd 1.6's `imports` would be tidier but replace a whole
// plugin's table: an imported CRI runtime would wipe the main config's CRI
// settings, CNI directories included.)
import { parse } from 'smol-toml';
import { failedPrecondition } from '../common/errors';

export const RUNTIME_TYPE = 'io.containerd.tern.v2';
export const BEGIN_MARK = '# BEGIN tern install: rewritten by `tern install`, edit the tern config instead';
export const END_MARK = '# END tern install';

export interface InstallOptions {
  /** containerd's main config file (default /etc/containerd/config.toml). */
  containerdConfig: string;
  /** CRI runtime handler name = RuntimeClass handler (default tern). */
  handler: string;
  /** tern's config file the runtime is given (ConfigPath). */
  ternConfig: string;
  /** Per-pod overhead put in the RuntimeClass (what a pod's VM costs on the host). */
  overheadMemory: string;
  overheadCpu: string;
}

export interface FileChange {
  path: string;
  /** Current content, null when the file does not exist. */
  before: string | null;
  after: string;
}

export interface InstallPlan {
  /** Only the files whose content changes. */
  changes: FileChange[];
  runtimeClass: string;
}

const HANDLER_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function runtimeBlock(o: InstallOptions): string {
  const table = `plugins."io.containerd.grpc.v1.cri".containerd.runtimes.${o.handler}`;
  return [
    BEGIN_MARK,
    `[${table}]`,
    `  runtime_type = ${JSON.stringify(RUNTIME_TYPE)}`,
    // Per-pod and per-container tern settings (e.g. io.tern.rootfs-limit-mib) reach the shim's spec.
    `  pod_annotations = ["io.tern.*"]`,
    `  container_annotations = ["io.tern.*"]`,
    `[${table}.options]`,
    `  ConfigPath = ${JSON.stringify(o.ternConfig)}`,
    END_MARK,
    '',
  ].join('\n');
}

export function runtimeClassText(o: InstallOptions): string {
  return [
    'apiVersion: node.k8s.io/v1',
    'kind: RuntimeClass',
    'metadata:',
    `  name: ${o.handler}`,
    `handler: ${o.handler}`,
    '# What a pod costs on the host beyond its containers: its VM (QEMU) and shim.',
    'overhead:',
    '  podFixed:',
    `    memory: "${o.overheadMemory}"`,
    `    cpu: "${o.overheadCpu}"`,
    '',
  ].join('\n');
}

function parseToml(path: string, text: string, what: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    throw failedPrecondition(`${path}: ${what} (${(err as Error).message.split('\n')[0]})`);
  }
}

function runtimeTypeOf(doc: Record<string, unknown>, handler: string): unknown {
  const cri = (doc.plugins as Record<string, unknown> | undefined)?.['io.containerd.grpc.v1.cri'] as Record<string, unknown> | undefined;
  const runtimes = (cri?.containerd as Record<string, unknown> | undefined)?.runtimes as Record<string, { runtime_type?: unknown }> | undefined;
  return runtimes?.[handler] ? (runtimes[handler].runtime_type ?? '') : undefined;
}

/** containerd's main config with tern's block in it (the same text if it already is). */
export function mainConfigWithTern(path: string, before: string | null, o: InstallOptions): string {
  const block = runtimeBlock(o);
  if (before === null) return `version = 2\n\n${block}`;
  const doc = parseToml(path, before, 'not valid TOML; fix it first');
  if (doc.version !== 2) {
    throw failedPrecondition(`${path}: config version ${String(doc.version ?? 1)}; tern install needs version 2: run \`containerd config migrate\` first`);
  }
  const begin = before.indexOf(BEGIN_MARK);
  const end = before.indexOf(END_MARK);
  let after: string;
  if (begin >= 0 && end > begin) {
    const stop = before.indexOf('\n', end);
    after = before.slice(0, begin) + block + (stop >= 0 ? before.slice(stop + 1) : '');
  } else {
    const type = runtimeTypeOf(doc, o.handler);
    if (type === RUNTIME_TYPE) return before; // registered by hand: leave it
    if (type !== undefined)
      throw failedPrecondition(`${path} already defines the CRI runtime handler "${o.handler}" as ${JSON.stringify(type)}: pick another with --handler`);
    after = `${before}${before.endsWith('\n') ? '' : '\n'}\n${block}`;
  }
  const check = parseToml(path, after, "tern's block would make it invalid TOML (a table defined inline?); add the runtime by hand");
  if (runtimeTypeOf(check, o.handler) !== RUNTIME_TYPE) throw failedPrecondition(`${path}: tern's block does not take effect there; add the runtime by hand`);
  return after;
}

/** The changes `tern install` makes, given a reader of the current files. */
export function planInstall(o: InstallOptions, read: (path: string) => string | null): InstallPlan {
  if (!HANDLER_RE.test(o.handler)) throw failedPrecondition(`handler ${JSON.stringify(o.handler)}: want a DNS label (lower-case letters, digits, dashes)`);
  const before = read(o.containerdConfig);
  const after = mainConfigWithTern(o.containerdConfig, before, o);
  return { changes: before === after ? [] : [{ path: o.containerdConfig, before, after }], runtimeClass: runtimeClassText(o) };
}

/** A line diff for --dry-run: "- " lines removed, "+ " added (shared prefix and suffix left out). */
export function lineDiff(before: string | null, after: string): string {
  const a = before === null ? [] : before.split('\n');
  const b = after.split('\n');
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const out = [`@@ line ${head + 1}`];
  for (const l of a.slice(head, a.length - tail)) out.push(`- ${l}`);
  for (const l of b.slice(head, b.length - tail)) out.push(`+ ${l}`);
  return `${out.join('\n')}\n`;
}
