#!/usr/bin/env node
// Compiles every .proto under proto/ into src/common/proto-descriptors.json
// (protobufjs Root.toJSON, field names kept in snake_case), except proto/cri/:
// the Kubernetes CRI API is loaded at run time by the test and benchmark CRI client (test/cri) and never bundled
// into the shim. Output is deterministic: files load in sorted order and
// namespaces are sorted by name.
// Usage: node scripts/gen-proto.mjs          write the JSON file
//        node scripts/gen-proto.mjs --stdout print it instead (used by a test)
import { readdirSync, writeFileSync, renameSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const protoDir = join(repo, 'proto');
const outFile = join(repo, 'src', 'common', 'proto-descriptors.json');
// Top-level folders of proto/ that stay out of the descriptors.
const SKIPPED_DIRS = new Set([join(protoDir, 'cri')]);

function listProtos(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(p)) out.push(...listProtos(p));
    } else if (entry.isFile() && entry.name.endsWith('.proto')) out.push(p);
  }
  return out;
}

// Recursively order every `nested` map by key so the JSON never depends on
// the order in which imports happened to be visited.
function sortNested(node) {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === 'nested' && v && typeof v === 'object') {
      const sorted = {};
      for (const name of Object.keys(v).sort()) sorted[name] = sortNested(v[name]);
      out[k] = sorted;
    } else {
      out[k] = sortNested(v);
    }
  }
  return out;
}

export function buildDescriptorsJson() {
  const files = listProtos(protoDir)
    .map((f) => relative(protoDir, f).split('\\').join('/'))
    .sort();
  const root = new protobuf.Root();
  // Imports are written relative to proto/; google/protobuf/* come bundled.
  root.resolvePath = (_origin, target) => join(protoDir, target);
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return `${JSON.stringify(sortNested(root.toJSON()), null, 2)}\n`;
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const json = buildDescriptorsJson();
  if (process.argv.includes('--stdout')) {
    process.stdout.write(json);
  } else {
    const tmp = `${outFile}.tmp-${process.pid}`;
    writeFileSync(tmp, json);
    renameSync(tmp, outFile);
    process.stdout.write(`wrote ${relative(repo, outFile)}\n`);
  }
}
