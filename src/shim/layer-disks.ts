// The image layers attached to a sandbox's VM as read-only disks, shared by
// its containers: one disk per layer, counted, taken out when the last
// container using it goes (unless the VM is about to go anyway). A layer goes
// into one of the VM's read-only disk slots when one is free (no PCI
// hot-plug: the guest has had the disk since boot), else it is hot-plugged as
// a device of its own under the layer's serial.
import { stat, truncate } from 'node:fs/promises';
import type { Logger } from '../common/logging';
import type { Vm } from '../hypervisor/hypervisor';
import type { LayerImage } from './layers';

interface LayerDisk {
  refs: number;
  image: LayerImage;
  /** Settles when the disk is in; resolves with the serial the guest sees it under. */
  attached: Promise<string>;
  /** Where it went: a slot (by the slot's serial) or a hot-plugged device (by id). */
  place?: { slot: string } | { deviceId: string };
}

export class LayerDisks {
  private readonly disks = new Map<string, LayerDisk>();
  private seq = 0;

  constructor(
    /** The VM, while it runs (undefined: nothing to unplug from). */
    private readonly vm: () => Vm | undefined,
    private readonly log: Logger,
    /** The size of the VM's layer slots (0: it has none): an image shorter than that is padded to it. */
    private readonly slotMiB = 0,
  ) {}

  /** Attaches the layer's disk, or takes another reference to it; resolves with the serial the guest finds it under. */
  async attach(image: LayerImage): Promise<string> {
    const have = this.disks.get(image.serial);
    if (have) {
      have.refs++;
      try {
        return await have.attached;
      } catch (err) {
        have.refs--;
        throw err;
      }
    }
    const vm = this.vm();
    if (!vm) throw new Error(`layer ${image.serial}: the VM is not running`);
    const entry: LayerDisk = { refs: 1, image, attached: Promise.resolve('') };
    entry.attached = this.place(vm, entry);
    this.disks.set(image.serial, entry);
    try {
      return await entry.attached;
    } catch (err) {
      if (this.disks.get(image.serial) === entry) this.disks.delete(image.serial);
      throw err;
    }
  }

  private async place(vm: Vm, entry: LayerDisk): Promise<string> {
    const { image } = entry;
    if (this.slotMiB > 0 && (await padToSlot(image.image, this.slotMiB))) {
      const slot = await vm.insertDisk(image.image, true);
      if (slot !== undefined) {
        entry.place = { slot };
        return slot;
      }
    }
    const deviceId = `layer${++this.seq}`;
    await vm.attachBlock({ id: deviceId, path: image.image, readOnly: true, serial: image.serial });
    entry.place = { deviceId };
    return image.serial;
  }

  /** Drops a reference; the last one takes the disk out, unless `detach` is false (the VM is about to go). */
  async release(serial: string, opts: { detach?: boolean } = {}): Promise<void> {
    const have = this.disks.get(serial);
    if (!have) return;
    if (--have.refs > 0) return;
    this.disks.delete(serial);
    const vm = this.vm();
    const place = have.place;
    if (opts.detach !== false && vm && place) {
      const out = 'slot' in place ? vm.ejectDisk(place.slot) : vm.detachBlock(place.deviceId);
      await out.catch((err: Error) => this.log.warn({ err: err.message, serial, ...place }, 'taking the layer disk out failed'));
    }
  }
}

/**
 * Makes a layer image exactly `slotMiB` long, so it fits a layer slot (the
 * guest read the slot's size at boot): a shorter one is extended with a hole
 * (erofs never reads past its own end; the cache counts what is on disk).
 * False when it is longer: it cannot go in a slot.
 */
export async function padToSlot(file: string, slotMiB: number): Promise<boolean> {
  const want = slotMiB * 1024 * 1024;
  const { size } = await stat(file);
  if (size > want) return false;
  if (size < want) await truncate(file, want);
  return true;
}
