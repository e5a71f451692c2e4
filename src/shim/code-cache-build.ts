// `make build`'s step that stamps the shim bundle with a fresh build id and
// writes its code cache:
//   node build/code-cache-build.js BUNDLE CACHE
// A process of its own: making the cache changes a V8 flag while it runs.
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { buildIdLine, buildIdOf, encodeCodeCache, makeCodeCache } from './code-cache';

const [bundle, out] = process.argv.slice(2);
if (bundle === undefined || out === undefined) {
  process.stderr.write('usage: code-cache-build BUNDLE CACHE\n');
  process.exit(2);
}
const built = readFileSync(bundle, 'utf8');
if (buildIdOf(built) !== undefined) {
  process.stderr.write(`code-cache-build: ${bundle} is stamped already (build it again first)\n`);
  process.exit(1);
}
// One id stamps the bundle and its cache: a cache is offered only to the bundle it was made from.
const id = randomBytes(8).toString('hex');
const source = `${built}${built.endsWith('\n') ? '' : '\n'}${buildIdLine(id)}\n`;
writeFileSync(bundle, source);
writeFileSync(`${out}.tmp`, encodeCodeCache(id, makeCodeCache(source, bundle)));
renameSync(`${out}.tmp`, out);
