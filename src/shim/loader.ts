// containerd-shim-tern-v2's script (dist/shim.js, run by the native launcher,
// helpers/tern-shim-launch.c): runs the shim's bundle beside it
// (shim-main.js, from main.ts) with its V8 code cache (code-cache.ts).
import { join } from 'node:path';
import { runWithCodeCache } from './code-cache';

runWithCodeCache(join(__dirname, 'shim-main.js'), join(__dirname, 'shim-main.v8cache'));
