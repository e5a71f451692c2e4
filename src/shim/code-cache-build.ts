// `make build`'s step that writes the shim bundle's code cache:
//   node build/code-cache-build.js BUNDLE CACHE
// A process of its own: making the cache changes a V8 flag while it runs.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { buildIdOf, encodeCodeCache, makeCodeCache } from './code-cache';

const [bundle, out] = process.argv.slice(2);
if (bundle === undefined || out === undefined) {
  process.stderr.write('usage: code-cache-build BUNDLE CACHE\n');
  process.exit(2);
}
const source = readFileSync(bundle, 'utf8');
const id = buildIdOf(source);
if (id === undefined) {
  process.stderr.write(`code-cache-build: ${bundle} has no build id line\n`);
  process.exit(1);
}
writeFileSync(`${out}.tmp`, encodeCodeCache(id, makeCodeCache(source, bundle)));
renameSync(`${out}.tmp`, out);
