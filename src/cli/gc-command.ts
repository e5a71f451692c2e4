// `tern gc [--json]`: one collection of the layer cache (<runtime.cache_dir>/layers,
// src/shim/layer-gc.ts), the one a sandbox's teardown runs: layer images no
// sandbox uses whose snapshot directory is gone go, then unused ones least
// recently used first past runtime.layer_cache_max_mib; stale pins, dead
// builds' temp files and orphan records go too, and the writable-layer
// directories (<cache_dir>/scratch) of sandboxes that are gone. Waits for a collection
// already running (up to CLI_GC_LOCK_WAIT_MS), exit 1 if it is still running.
import { loadConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { layersDirOf } from '../shim/layer-files';
import { CLI_GC_LOCK_WAIT_MS, collectLayers, type LayerGcResult } from '../shim/layer-gc';
import { reapStaleScratch } from '../shim/scratch-disks';
import { CONFIG_OPTION, flag, HELP_OPTION, JSON_OPTION, parseCommand, str } from './args';
import { kibToMiB, table } from './format';
import { EXIT_FAILURE, EXIT_OK, type CliIo } from './io';
import { GC_USAGE } from './usage';

const size = (bytes: number): string => kibToMiB(bytes / 1024);

export function renderGc(r: LayerGcResult & { staleScratch?: number }, layersDir: string): string {
  if (!r.ran) return `another collection of ${layersDir} is still running: nothing done\n`;
  const lines: string[] = [];
  const removedBytes = r.removed.reduce((n, x) => n + x.bytes, 0);
  lines.push(`removed ${r.removed.length} layer image(s), ${size(removedBytes)}`);
  if (r.removed.length > 0) {
    const rows = [['LAYER', 'SIZE', 'WHY'], ...r.removed.map((x) => [x.key.slice(0, 16), size(x.bytes), x.reason])];
    lines.push(
      ...table(rows)
        .trimEnd()
        .split('\n')
        .map((l) => `  ${l}`),
    );
  }
  const inUse = r.kept.filter((k) => k.reason === 'in-use').length;
  const bound = r.maxBytes > 0 ? `bound ${size(r.maxBytes)}` : 'no bound (runtime.layer_cache_max_mib = 0)';
  lines.push(`kept ${r.kept.length} layer image(s), ${size(r.keptBytes)} (${inUse} in use); ${bound}`);
  const cleaned = [
    [r.stalePins, 'pins of sandboxes that are gone'],
    [r.staleTemps, 'temp files of dead builds'],
    [r.orphanRecords, 'records without an image'],
    [r.staleScratch ?? 0, 'writable-layer directories of sandboxes that are gone'],
  ] as const;
  for (const [n, what] of cleaned) if (n > 0) lines.push(`removed ${n} ${what}`);
  return `${lines.join('\n')}\n`;
}

export async function gcCommand(argv: string[], io: CliIo): Promise<number> {
  const p = parseCommand(argv, { ...HELP_OPTION, ...JSON_OPTION, ...CONFIG_OPTION }, GC_USAGE);
  if (flag(p, 'help')) {
    io.out(GC_USAGE);
    return EXIT_OK;
  }
  let cfg: TernConfig;
  try {
    cfg = loadConfig(str(p, 'config'));
  } catch (err) {
    io.err(`tern gc: ${messageOf(err)}\n`);
    return EXIT_FAILURE;
  }
  const layersDir = layersDirOf(cfg.runtime.cacheDir);
  // Removals are in the summary; a warning (the cache above its bound) goes to stderr.
  const log = { info: () => {}, warn: (o: object, msg: string) => io.err(`tern gc: ${msg} ${JSON.stringify(o)}\n`) };
  const layers = await collectLayers({ layersDir, maxBytes: cfg.runtime.layerCacheMaxMiB * 1024 * 1024, lockWaitMs: CLI_GC_LOCK_WAIT_MS, log });
  const r = { ...layers, staleScratch: await reapStaleScratch(cfg.runtime.cacheDir) };
  io.out(flag(p, 'json') ? `${JSON.stringify({ layersDir, ...r }, null, 2)}\n` : renderGc(r, layersDir));
  return r.ran ? EXIT_OK : EXIT_FAILURE;
}
