// How much a container may write to its root filesystem: the size of the
// ext4 device its writable layer lives on (scratch-disks.ts). The config's
// default, or the container's own annotation (CRI copies it into the spec
// when containerd's runtime handler lists it in container_annotations).
import { MIN_ROOTFS_MIB, type TernConfig } from '../common/config';
import { invalidArgument } from '../common/errors';

export const ANN_ROOTFS_LIMIT = 'io.tern.rootfs-limit-mib';

/** The container's writable-layer size in MiB; bad or too-large values fail naming the key and the value. */
export function rootfsLimitMiB(annotations: Record<string, string>, runtime: TernConfig['runtime']): number {
  const device = runtime.rootfsDeviceMiB;
  const raw = annotations[ANN_ROOTFS_LIMIT];
  if (raw === undefined || raw === '') return runtime.rootfsLimitMiB > 0 ? runtime.rootfsLimitMiB : device;
  if (!/^[0-9]{1,9}$/.test(raw.trim())) {
    throw invalidArgument(`annotation ${ANN_ROOTFS_LIMIT}=${JSON.stringify(raw)}: want a whole number of MiB`);
  }
  const mib = Number(raw.trim());
  if (mib < MIN_ROOTFS_MIB) throw invalidArgument(`annotation ${ANN_ROOTFS_LIMIT}=${JSON.stringify(raw)}: at least ${MIN_ROOTFS_MIB} MiB`);
  if (mib > device) {
    throw invalidArgument(
      `annotation ${ANN_ROOTFS_LIMIT}=${JSON.stringify(raw)} is larger than the largest writable layer, runtime.rootfs_device_mib ${device}`,
    );
  }
  return mib;
}
