// What `tern factory` reports: the template store's entries (from
// TemplateStore.status) and the outcome of `tern factory init`, as views that
// print as text or JSON.
import type { TernConfig } from '../common/config';
import { templateShape, type TemplateBuildPhase } from '../shim/templates/factory';
import type { TemplateShape } from '../shim/templates/key';
import type { Template, TemplateStatus, TemplateStore } from '../shim/templates/store';
import { table } from './format';

const MiB = 1024 * 1024;

export interface TemplateView {
  key: string;
  state: TemplateStatus['state'];
  detail: string;
  /** The guest RAM size the template was built with (ready templates). */
  memoryMiB: number | null;
  /** What its memory file occupies on the tmpfs, in MiB (0.1 precision). */
  memoryUsedMiB: number | null;
  createdAt: string | null;
  buildMs: number | null;
}

export interface FactoryStatusView {
  /** factory.template: whether pods start as clones. */
  enabled: boolean;
  dir: string;
  templates: TemplateView[];
}

export function factoryStatus(cfg: TernConfig, store: TemplateStore, now = Date.now()): FactoryStatusView {
  const templates = store.status().map((s): TemplateView => {
    let detail = s.detail;
    if (s.state === 'failed' && store.recentFailure(s.key, now) === null) detail += ' (expired: the next start retries)';
    return {
      key: s.key,
      state: s.state,
      detail,
      memoryMiB: s.record?.memoryMiB ?? null,
      memoryUsedMiB: s.memoryBytesUsed === undefined ? null : Math.round((s.memoryBytesUsed / MiB) * 10) / 10,
      createdAt: s.record?.createdAt ?? null,
      buildMs: s.record?.buildMs ?? null,
    };
  });
  return { enabled: cfg.factory.template, dir: store.dir, templates };
}

const mib = (n: number | null) => (n === null ? '-' : `${n % 1 === 0 ? n : n.toFixed(1)} MiB`);

export function renderFactoryStatus(v: FactoryStatusView): string {
  const head = [`templates: ${v.enabled ? 'enabled' : 'disabled'} (factory.template = ${v.enabled})`, `store:     ${v.dir}`].join('\n');
  if (v.templates.length === 0) return `${head}\nno templates\n`;
  const rows = [['KEY', 'STATE', 'MEMORY', 'USED', 'DETAIL']];
  for (const t of v.templates) rows.push([t.key, t.state, mib(t.memoryMiB), mib(t.memoryUsedMiB), t.detail]);
  return `${head}\n\n${table(rows)}`;
}

/** What init needs of the VM factory (VmFactory; a stand-in in tests). */
export interface TemplateSource {
  readonly store: TemplateStore;
  keyOf(shape: TemplateShape): string;
  template(shape: TemplateShape, onPhase?: (phase: TemplateBuildPhase) => void): Promise<Template>;
}

export interface InitResult {
  key: string;
  /** built: there was no usable template before (this or a concurrent start built it). */
  outcome: 'built' | 'present';
  vcpus: number;
  memoryMiB: number;
  dir: string;
  createdAt: string;
  /** How long the template's build took. */
  buildMs: number;
  /** How long this command waited for it. */
  elapsedMs: number;
  enabled: boolean;
}

/** Builds, or finds, the template for the configured default guest shape; onPhase hears a build's phases. */
export async function initTemplate(cfg: TernConfig, source: TemplateSource, onPhase?: (phase: TemplateBuildPhase) => void): Promise<InitResult> {
  const shape = templateShape(cfg, cfg.hypervisor.vcpus, cfg.hypervisor.memoryMiB);
  const key = source.keyOf(shape);
  const present = source.store.check(key, shape.memoryMiB).template !== undefined;
  const t0 = performance.now();
  const t = await source.template(shape, onPhase);
  return {
    key: t.key,
    outcome: present ? 'present' : 'built',
    vcpus: shape.vcpus,
    memoryMiB: shape.memoryMiB,
    dir: t.dir,
    createdAt: t.record.createdAt,
    buildMs: t.record.buildMs,
    elapsedMs: Math.round(performance.now() - t0),
    enabled: cfg.factory.template,
  };
}

export function renderInit(r: InitResult): string {
  const lines = [
    `template ${r.key}: ${r.outcome === 'built' ? 'built' : 'already present'} (${r.vcpus} vCPU, ${r.memoryMiB} MiB)`,
    `directory:  ${r.dir}`,
    `created:    ${r.createdAt}`,
    `build time: ${(r.buildMs / 1000).toFixed(1)} s`,
  ];
  if (!r.enabled) lines.push('note: factory.template = false, so pods boot cold and do not use it');
  return `${lines.join('\n')}\n`;
}
