// Which layer images a collection removes, decided from facts alone (pure):
// one a sandbox uses stays; one nobody uses goes when its snapshot directory
// is gone or is not the one it was made from, or when it has no record (made
// before records existed: its source cannot be checked; it is rebuilt if a
// container wants it again); then, under a size bound, unused images go
// least recently used first until the cache fits.
import type { SourceState } from './layer-files';

export interface LayerFacts {
  key: string;
  bytes: number;
  /** Sandboxes that pin it (hard links beside the cache's). */
  users: number;
  /** Last pinned or unpinned (the image's change time: a link changes it). */
  lastUsedMs: number;
  source: SourceState;
}

export type RemoveReason = 'source-gone' | 'source-changed' | 'no-record' | 'evicted';
export type KeepReason = 'in-use' | 'source-present';

export type LayerDecision = { layer: LayerFacts; action: 'remove'; reason: RemoveReason } | { layer: LayerFacts; action: 'keep'; reason: KeepReason };

const REMOVE_FOR: Record<Exclude<SourceState, 'present'>, RemoveReason> = {
  gone: 'source-gone',
  changed: 'source-changed',
  unknown: 'no-record',
};

/** One decision per layer, in the order given; maxBytes 0: no bound. */
export function planLayerGc(layers: readonly LayerFacts[], maxBytes: number): LayerDecision[] {
  const decisions = new Map<string, LayerDecision>();
  for (const layer of layers) {
    if (layer.users > 0) decisions.set(layer.key, { layer, action: 'keep', reason: 'in-use' });
    else if (layer.source === 'present') decisions.set(layer.key, { layer, action: 'keep', reason: 'source-present' });
    else decisions.set(layer.key, { layer, action: 'remove', reason: REMOVE_FOR[layer.source] });
  }
  if (maxBytes > 0) {
    let total = 0;
    for (const d of decisions.values()) if (d.action === 'keep') total += d.layer.bytes;
    const evictable = [...decisions.values()]
      .filter((d) => d.action === 'keep' && d.reason === 'source-present')
      .sort((a, b) => a.layer.lastUsedMs - b.layer.lastUsedMs || a.layer.key.localeCompare(b.layer.key));
    for (const d of evictable) {
      if (total <= maxBytes) break;
      decisions.set(d.layer.key, { layer: d.layer, action: 'remove', reason: 'evicted' });
      total -= d.layer.bytes;
    }
  }
  return layers.map((l) => decisions.get(l.key)!);
}
