// The shim's bundle with a V8 code cache: every pod starts a fresh Node
// process for its shim, and compiling the ~750 KB bundle (and, later, each
// function on its first call) is CPU on every start path. `make build` writes
// the compiled code of every function beside the bundle (shim-main.v8cache);
// the loader (loader.ts, dist/shim.js) hands it to V8 with the source, so the
// shim starts with its functions compiled.
//
// V8 accepts a cache only for the same V8 version and flags and a source of
// the same length; it does not compare the text. So the build stamps the
// bundle and its cache with one build id, and a cache whose id is not the
// bundle's is not offered. A cache that is missing, stale or rejected costs
// nothing but the speed-up: the bundle is compiled as without one.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { Script } from 'node:vm';

const MAGIC = 'tern-v8-code-cache 1';
/** The last line the build appends to the bundle: `//# tern-build=<id>`. */
const BUILD_ID_LINE = /\/\/# tern-build=([0-9a-f]{8,64})\s*$/;

/** What became of the cache: offered and taken, offered and refused by V8, or none fit to offer. */
export type CodeCacheState = 'used' | 'rejected' | 'absent';

/** The bundle's build id, from its last line; undefined if it has none. */
export function buildIdOf(source: string): string | undefined {
  return BUILD_ID_LINE.exec(source.slice(-120))?.[1];
}

/** The line the build appends to a bundle to give it `id`. */
export function buildIdLine(id: string): string {
  if (!/^[0-9a-f]{8,64}$/.test(id)) throw new Error(`build id ${JSON.stringify(id)}: expected 8-64 hex digits`);
  return `//# tern-build=${id}`;
}

/**
 * The bundle as one function of CommonJS's five module arguments. A leading
 * `#!` line becomes an empty line, so line numbers in stack traces hold.
 */
export function wrapCommonJs(source: string): string {
  const body = source.startsWith('#!') ? source.replace(/^#![^\n]*/, '') : source;
  return `(function (exports, require, module, __filename, __dirname) {${body}\n})`;
}

/** A cache file's bytes: a header naming the build, then V8's data. */
export function encodeCodeCache(buildId: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${MAGIC} ${buildId}\n`), data]);
}

/** V8's data from a cache file's bytes, if they are a cache for `buildId`. */
export function decodeCodeCache(file: Buffer, buildId: string): Buffer | undefined {
  const header = Buffer.from(`${MAGIC} ${buildId}\n`);
  if (file.length <= header.length || !file.subarray(0, header.length).equals(header)) return undefined;
  return file.subarray(header.length);
}

/**
 * V8's code cache of the wrapped bundle with every function compiled, not only
 * those run at load: compiled with lazy compilation off, and serialized after
 * it is back on, because V8 stamps a cache with a hash of its flags and
 * refuses one made under other flags. Run it in a process of its own (the
 * build does): it changes a V8 flag while it runs.
 */
export function makeCodeCache(source: string, filename: string): Buffer {
  setFlagsFromString('--no-lazy');
  let script: Script;
  try {
    script = new Script(wrapCommonJs(source), { filename });
  } finally {
    setFlagsFromString('--lazy');
  }
  return script.createCachedData();
}

/** Reads a cache file, or undefined when there is none to read. */
function readCache(cacheFile: string): Buffer | undefined {
  try {
    return readFileSync(cacheFile);
  } catch {
    return undefined;
  }
}

/**
 * Compiles the bundle at `file` with the cache at `cacheFile` when it is the
 * bundle's, and runs it as a CommonJS module (its `require` resolves from the
 * bundle's directory). Returns what became of the cache.
 */
export function runWithCodeCache(file: string, cacheFile: string): CodeCacheState {
  const source = readFileSync(file, 'utf8');
  const id = buildIdOf(source);
  const raw = id === undefined ? undefined : readCache(cacheFile);
  const cachedData = raw === undefined || id === undefined ? undefined : decodeCodeCache(raw, id);
  const script = new Script(wrapCommonJs(source), { filename: file, cachedData });
  const state: CodeCacheState = cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';
  setCodeCacheState(state);
  const fn = script.runInThisContext() as (e: object, r: NodeRequire, m: object, f: string, d: string) => void;
  const mod = { exports: {}, filename: file, id: file };
  fn.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
  return state;
}

const STATE_KEY = Symbol.for('tern.shim.codeCache');

function setCodeCacheState(state: CodeCacheState): void {
  (globalThis as Record<symbol, unknown>)[STATE_KEY] = state;
}

/** What the loader did with the cache in this process; undefined when the bundle was run without the loader. */
export function codeCacheState(): CodeCacheState | undefined {
  return (globalThis as Record<symbol, unknown>)[STATE_KEY] as CodeCacheState | undefined;
}
