// `tern metrics serve`: a Prometheus endpoint for the node's tern sandboxes.
// Flow per scrape: server.ts (HTTP GET /metrics) -> collect.ts, which reads
// the sandboxes from disk and /proc (../sandbox-info.ts), asks each live shim
// for its containers' guest cgroup stats over ttrpc (shim-stats.ts ->
// guest-stats.ts), folds in the shims' new start events (events-tail.ts ->
// start-stats.ts, histogram.ts), asks the warm pool for its status, and
// writes the text format (exposition.ts). listen.ts parses --listen.
export { Collector, DEFAULT_POOL_TIMEOUT_MS, DEFAULT_SHIM_TIMEOUT_MS, SCRAPE_ERROR_REASONS, type CollectorOptions } from './collect';
export { formatListen, parseListen, type ListenAddress } from './listen';
export { serveMetrics, type MetricsServer } from './server';
