// LayerDisks: a layer goes into a free read-only slot (padded to its size)
// or, without one, is hot-plugged; shared by reference; taken out the way it
// went in when the last user lets go.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../src/common/logging';
import type { Vm } from '../../../src/hypervisor/hypervisor';
import { LayerDisks } from '../../../src/shim/layer-disks';
import type { LayerImage } from '../../../src/shim/layers';

const root = mkdtempSync(join(tmpdir(), 'tern-layer-disks-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const MiB = 1024 * 1024;

/** A layer image file of `bytes`. */
function layer(name: string, bytes: number): LayerImage {
  const image = join(root, `${name}.erofs`);
  writeFileSync(image, Buffer.alloc(bytes, 7));
  return { dir: `/snapshots/${name}`, image, serial: `L${name}` };
}

/** A VM with `slots` read-only slots of slotMiB that records each call. */
function recordingVm(slots: number, slotMiB: number) {
  const calls: string[] = [];
  const inSlot = new Map<string, string>();
  const vm = {
    insertDisk: async (path: string, readOnly: boolean) => {
      const size = statSync(path).size;
      const free = Array.from({ length: slots }, (_, i) => `tern-ro-slot${i}`).find((s) => !inSlot.has(s));
      const serial = readOnly && size === slotMiB * MiB ? free : undefined;
      calls.push(`insert ${path} ${size} -> ${serial}`);
      if (serial) inSlot.set(serial, path);
      return serial;
    },
    ejectDisk: async (serial: string) => {
      calls.push(`eject ${serial}`);
      inSlot.delete(serial);
    },
    attachBlock: async (d: { id: string; path: string; readOnly: boolean; serial: string }) =>
      void calls.push(`attach ${d.id} ${d.path} ro=${d.readOnly} ${d.serial}`),
    detachBlock: async (id: string) => void calls.push(`detach ${id}`),
  } as unknown as Vm;
  return { vm, calls };
}

describe('LayerDisks', () => {
  it('puts a layer in a slot, padded to the slot size, shares it, and ejects it with the last user', async () => {
    const { vm, calls } = recordingVm(1, 4);
    const disks = new LayerDisks(() => vm, silentLogger, 4);
    const a = layer('a', 100_000);
    expect(await disks.attach(a)).toBe('tern-ro-slot0');
    // Padded with a hole: the content is the same, the length the slot's.
    expect(statSync(a.image).size).toBe(4 * MiB);
    expect(statSync(a.image).blocks * 512).toBeLessThan(MiB);
    expect(await disks.attach(a)).toBe('tern-ro-slot0');
    await disks.release(a.serial);
    expect(calls).toEqual([`insert ${a.image} ${4 * MiB} -> tern-ro-slot0`]);
    await disks.release(a.serial);
    expect(calls.at(-1)).toBe('eject tern-ro-slot0');
  });

  it('hot-plugs under the layer serial what finds no free slot, and unplugs it', async () => {
    const { vm, calls } = recordingVm(1, 4);
    const disks = new LayerDisks(() => vm, silentLogger, 4);
    const [a, b] = [layer('b1', 5000), layer('b2', 5000)];
    expect(await disks.attach(a)).toBe('tern-ro-slot0');
    expect(await disks.attach(b)).toBe('Lb2');
    await disks.release(b.serial);
    await disks.release(a.serial);
    expect(calls).toEqual([
      `insert ${a.image} ${4 * MiB} -> tern-ro-slot0`,
      `insert ${b.image} ${4 * MiB} -> undefined`,
      `attach layer1 ${b.image} ro=true Lb2`,
      'detach layer1',
      'eject tern-ro-slot0',
    ]);
  });

  it('hot-plugs a layer larger than a slot without touching its file, and everything when the VM has no slots', async () => {
    const { vm, calls } = recordingVm(2, 1);
    const big = layer('big', 2 * MiB);
    expect(await new LayerDisks(() => vm, silentLogger, 1).attach(big)).toBe('Lbig');
    expect(statSync(big.image).size).toBe(2 * MiB);
    const small = layer('small', 1000);
    expect(await new LayerDisks(() => vm, silentLogger, 0).attach(small)).toBe('Lsmall');
    expect(statSync(small.image).size).toBe(1000);
    expect(calls).toEqual([`attach layer1 ${big.image} ro=true Lbig`, `attach layer1 ${small.image} ro=true Lsmall`]);
  });

  it('leaves the disks in when the VM is about to go, and fails naming the layer when it is not running', async () => {
    const { vm, calls } = recordingVm(1, 4);
    const disks = new LayerDisks(() => vm, silentLogger, 4);
    const a = layer('c', 1000);
    await disks.attach(a);
    await disks.release(a.serial, { detach: false });
    expect(calls).toEqual([`insert ${a.image} ${4 * MiB} -> tern-ro-slot0`]);
    await expect(new LayerDisks(() => undefined, silentLogger, 4).attach(a)).rejects.toThrow('layer Lc: the VM is not running');
  });
});
