// What a Create plans for the container's writable layer: a disk of the
// configured or annotated size, none when the root filesystem is read-only
// (CRI's pause container), and a bad annotation fails either way.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../src/common/config';
import { planCreate } from '../../../src/shim/create-plan';
import { ANN_ROOTFS_LIMIT } from '../../../src/shim/rootfs-limit';

const root = mkdtempSync(join(tmpdir(), 'tern-plan-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A bundle whose config.json has `root` and `annotations`. */
function bundle(rootSpec: { readonly?: boolean }, annotations: Record<string, string> = {}): string {
  // A pod's own IPC namespace, as CRI gives a pod that does not ask for the host's.
  const linux = { namespaces: [{ type: 'ipc' }, { type: 'pid' }, { type: 'mount' }] };
  const dir = mkdtempSync(join(root, `b${++n}-`));
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ ociVersion: '1.0.2', process: { args: ['true'] }, root: { path: 'rootfs', ...rootSpec }, annotations, linux }),
  );
  return dir;
}
const plan = (b: string) => planCreate({ id: 'c1', bundle: b, rootfs: [] }, defaultConfig());

describe('planCreate: the writable layer', () => {
  it('plans a disk of the default size, or of the annotated one', () => {
    expect(plan(bundle({})).rootfsMiB).toBe(10_240);
    expect(plan(bundle({ readonly: false }, { [ANN_ROOTFS_LIMIT]: '64' })).rootfsMiB).toBe(64);
  });

  it('plans no disk for a read-only root filesystem', () => {
    expect(plan(bundle({ readonly: true }, { 'io.kubernetes.cri.container-type': 'sandbox' })).rootfsMiB).toBeUndefined();
  });

  it('rejects a bad annotation also on a read-only root', () => {
    expect(() => plan(bundle({ readonly: true }, { [ANN_ROOTFS_LIMIT]: 'big' }))).toThrow(`annotation ${ANN_ROOTFS_LIMIT}="big": want a whole number of MiB`);
  });
});
