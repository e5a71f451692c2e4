// The image layers attached to a sandbox's VM as read-only disks, shared by
// its containers: one disk per layer (by serial), counted, unplugged when the
// last container using it goes (unless the VM is about to go anyway).
import type { Logger } from '../common/logging';
import type { Vm } from '../hypervisor/hypervisor';
import type { LayerImage } from './layers';

export class LayerDisks {
  private readonly disks = new Map<string, { refs: number; image: LayerImage; deviceId: string; attached: Promise<void> }>();
  private seq = 0;

  constructor(
    /** The VM, while it runs (undefined: nothing to unplug from). */
    private readonly vm: () => Vm | undefined,
    private readonly log: Logger,
  ) {}

  /** Attaches the layer's disk, or takes another reference to it. */
  async attach(image: LayerImage): Promise<void> {
    const have = this.disks.get(image.serial);
    if (have) {
      have.refs++;
      try {
        await have.attached;
      } catch (err) {
        have.refs--;
        throw err;
      }
      return;
    }
    const vm = this.vm();
    if (!vm) throw new Error(`layer ${image.serial}: the VM is not running`);
    const deviceId = `layer${++this.seq}`;
    const attached = vm.attachBlock({ id: deviceId, path: image.image, readOnly: true, serial: image.serial });
    const entry = { refs: 1, image, deviceId, attached };
    this.disks.set(image.serial, entry);
    try {
      await attached;
    } catch (err) {
      if (this.disks.get(image.serial) === entry) this.disks.delete(image.serial);
      throw err;
    }
  }

  /** Drops a reference; the last one unplugs the disk, unless `detach` is false (the VM is about to go). */
  async release(serial: string, opts: { detach?: boolean } = {}): Promise<void> {
    const have = this.disks.get(serial);
    if (!have) return;
    if (--have.refs > 0) return;
    this.disks.delete(serial);
    const vm = this.vm();
    if (opts.detach !== false && vm) {
      await vm.detachBlock(have.deviceId).catch((err: Error) => this.log.warn({ err: err.message, serial }, 'detaching layer disk failed'));
    }
  }
}
