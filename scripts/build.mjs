// Bundles the shim and the guest agent into single files with esbuild
// (fast start: one file to load, no module resolution at run time).
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', sourcemap: false, logLevel: 'warning', legalComments: 'none' };
await Promise.all([
  build({ ...common, entryPoints: ['src/shim/main.ts'], outfile: 'dist/shim.js', banner: { js: '#!/usr/bin/env node' } }),
  build({ ...common, entryPoints: ['src/agent/main.ts'], outfile: 'dist/agent.js', minify: true }),
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/tern.js', banner: { js: '#!/usr/bin/env node' } }),
]);
