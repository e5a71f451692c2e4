// The shim's V8 code cache: the build stamps the bundle and its cache with one
// id; the loader (dist/shim.js) offers the cache only to that bundle, runs the
// bundle as a CommonJS module, and says what became of the cache. The real
// loader and cache builder from `make build` run here, in Node processes of
// their own, over stand-in bundles; and the built shim's own cache must be
// one this Node takes.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildIdLine, buildIdOf, decodeCodeCache, encodeCodeCache, wrapCommonJs } from '../../../src/shim/code-cache';

const ROOT = join(__dirname, '../../..');
const DIST = join(ROOT, 'dist');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-code-cache-'));
  copyFileSync(join(DIST, 'shim.js'), join(dir, 'shim.js'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A stand-in bundle: reports the loader's verdict and what a CommonJS module sees. */
function bundle(id: string | undefined, padding = ''): string {
  return [
    '#!/usr/bin/env node',
    "'use strict';",
    `const { join } = require('node:path');`,
    `const helper = require(join(__dirname, 'helper.js'));`,
    'function later(x) { return x * 2; }',
    `process.stdout.write(JSON.stringify({ state: globalThis[Symbol.for('tern.shim.codeCache')], helper, file: __filename, twice: later(21), strict: (function () { return this === undefined; })() }));`,
    `// ${padding}`,
    id === undefined ? '' : buildIdLine(id),
    '',
  ].join('\n');
}

function runLoader(): { state: string; helper: string; file: string; twice: number; strict: boolean } {
  return JSON.parse(execFileSync(process.execPath, [join(dir, 'shim.js')], { encoding: 'utf8', timeout: 10_000 }));
}

function writeBundle(text: string): void {
  writeFileSync(join(dir, 'shim-main.js'), text);
  writeFileSync(join(dir, 'helper.js'), "module.exports = 'helper loaded';");
}

function buildCache(): void {
  execFileSync(process.execPath, [join(ROOT, 'build/code-cache-build.js'), join(dir, 'shim-main.js'), join(dir, 'shim-main.v8cache')], {
    timeout: 20_000,
    stdio: 'pipe',
  });
}

describe('code cache: pure parts', () => {
  it('the build id is read from the last line only, and must be hex', () => {
    expect(buildIdOf(`x\n${buildIdLine('00ff00ff00ff00ff')}\n`)).toBe('00ff00ff00ff00ff');
    expect(buildIdOf(`${buildIdLine('00ff00ff00ff00ff')}\n${'y'.repeat(500)}\n`)).toBeUndefined();
    expect(buildIdOf('no id here')).toBeUndefined();
    expect(() => buildIdLine('not-hex!')).toThrow(/8-64 hex digits/);
  });

  it('wrapping keeps line numbers: a `#!` line becomes an empty one', () => {
    const src = '#!/usr/bin/env node\n"use strict";\nthrow new Error("line 3");\n';
    const fn = new Script(wrapCommonJs(src), { filename: 'b.js' }).runInThisContext() as () => void;
    let stack = '';
    try {
      fn();
    } catch (err) {
      stack = (err as Error).stack ?? '';
    }
    expect(stack).toMatch(/b\.js:3:/);
  });

  it('a cache file is offered only to the build it names', () => {
    const data = Buffer.from('v8 data');
    const file = encodeCodeCache('0123456789abcdef', data);
    expect(decodeCodeCache(file, '0123456789abcdef')).toEqual(data);
    expect(decodeCodeCache(file, 'fedcba9876543210')).toBeUndefined();
    expect(decodeCodeCache(file.subarray(0, 10), '0123456789abcdef')).toBeUndefined();
    expect(decodeCodeCache(encodeCodeCache('0123456789abcdef', Buffer.alloc(0)), '0123456789abcdef')).toBeUndefined();
  });
});

describe('code cache: the built loader and cache builder', () => {
  it('the builder stamps the bundle with a build id and writes its cache; the loader uses it and runs the bundle as a CommonJS module', () => {
    writeBundle(bundle(undefined));
    buildCache();
    const id = buildIdOf(readFileSync(join(dir, 'shim-main.js'), 'utf8'));
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(readFileSync(join(dir, 'shim-main.v8cache')).subarray(0, 40).toString()).toMatch(new RegExp(`^tern-v8-code-cache 1 ${id}\n`));
    // A stamped bundle is not stamped again: it is built anew first.
    expect(() => buildCache()).toThrow();
    const out = runLoader();
    expect(out).toEqual({ state: 'used', helper: 'helper loaded', file: join(dir, 'shim-main.js'), twice: 42, strict: true });
  });

  it('a cache of another build is not offered, even for a source of the same length', () => {
    writeBundle(bundle(undefined));
    buildCache();
    const stamped = readFileSync(join(dir, 'shim-main.js'), 'utf8');
    const other = stamped.replace(/tern-build=[0-9a-f]+/, 'tern-build=bbbbbbbbbbbbbbbb');
    expect(other.length).toBe(stamped.length);
    writeFileSync(join(dir, 'shim-main.js'), other);
    expect(runLoader().state).toBe('absent');
  });

  it('a bundle without a build id, or no cache file, runs without one', () => {
    writeBundle(bundle(undefined));
    expect(runLoader()).toMatchObject({ state: 'absent', twice: 42 });
    writeBundle(bundle('cccccccccccccccc'));
    rmSync(join(dir, 'shim-main.v8cache'), { force: true });
    expect(runLoader()).toMatchObject({ state: 'absent', twice: 42 });
  });

  it('a cache V8 refuses (damaged data under the right header) is rejected, and the bundle still runs', () => {
    writeBundle(bundle('dddddddddddddddd'));
    writeFileSync(join(dir, 'shim-main.v8cache'), encodeCodeCache('dddddddddddddddd', Buffer.alloc(4096, 7)));
    expect(runLoader()).toMatchObject({ state: 'rejected', helper: 'helper loaded', twice: 42 });
  });

  it("the built shim's own cache is taken by this Node", () => {
    const out = execFileSync(process.execPath, [join(DIST, 'shim.js'), 'version'], { encoding: 'utf8', timeout: 10_000 });
    expect(out).toMatch(/^containerd-shim-tern-v2 \S+\ncode cache: used\n$/);
  });
});
