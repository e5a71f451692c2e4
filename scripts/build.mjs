// Bundles the shim and the guest agent into single files with esbuild
// (fast start: one file to load, no module resolution at run time), and
// writes the shim bundle's V8 code cache (src/shim/code-cache.ts).
import { execFileSync } from 'node:child_process';
import { build } from 'esbuild';

const common = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', sourcemap: false, logLevel: 'warning', legalComments: 'none' };
await Promise.all([
  build({ ...common, entryPoints: ['src/shim/main.ts'], outfile: 'dist/shim-main.js' }),
  build({ ...common, entryPoints: ['src/shim/loader.ts'], outfile: 'dist/shim.js', banner: { js: '#!/usr/bin/env node' } }),
  build({ ...common, entryPoints: ['src/shim/code-cache-build.ts'], outfile: 'build/code-cache-build.js' }),
  build({ ...common, entryPoints: ['src/agent/main.ts'], outfile: 'dist/agent.js', minify: true }),
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: 'dist/tern.js', banner: { js: '#!/usr/bin/env node' } }),
]);
// Stamps the bundle with a build id and writes its cache.
execFileSync(process.execPath, ['build/code-cache-build.js', 'dist/shim-main.js', 'dist/shim-main.v8cache'], { stdio: 'inherit' });
