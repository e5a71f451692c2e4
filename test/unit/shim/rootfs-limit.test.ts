// A container's writable-layer size: the config's default or its annotation,
// with bad values failing by key and value.
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../src/common/config';
import { ANN_ROOTFS_LIMIT, rootfsLimitMiB } from '../../../src/shim/rootfs-limit';

const runtime = (over: Partial<ReturnType<typeof defaultConfig>['runtime']> = {}) => ({ ...defaultConfig().runtime, ...over });

describe('rootfsLimitMiB', () => {
  it('is the device size by default, the configured limit when set, the annotation when given', () => {
    expect(rootfsLimitMiB({}, runtime())).toBe(10_240);
    expect(rootfsLimitMiB({}, runtime({ rootfsLimitMiB: 512 }))).toBe(512);
    expect(rootfsLimitMiB({ [ANN_ROOTFS_LIMIT]: '64' }, runtime({ rootfsLimitMiB: 512 }))).toBe(64);
    expect(rootfsLimitMiB({ [ANN_ROOTFS_LIMIT]: '' }, runtime({ rootfsDeviceMiB: 2048 }))).toBe(2048);
  });

  it('rejects a malformed, too small or too large annotation by key and value', () => {
    expect(() => rootfsLimitMiB({ [ANN_ROOTFS_LIMIT]: '64M' }, runtime())).toThrow(`annotation ${ANN_ROOTFS_LIMIT}="64M": want a whole number of MiB`);
    expect(() => rootfsLimitMiB({ [ANN_ROOTFS_LIMIT]: '-1' }, runtime())).toThrow(`annotation ${ANN_ROOTFS_LIMIT}="-1": want a whole number of MiB`);
    expect(() => rootfsLimitMiB({ [ANN_ROOTFS_LIMIT]: '8' }, runtime())).toThrow(`annotation ${ANN_ROOTFS_LIMIT}="8": at least 16 MiB`);
    expect(() => rootfsLimitMiB({ [ANN_ROOTFS_LIMIT]: '20000' }, runtime())).toThrow(
      `annotation ${ANN_ROOTFS_LIMIT}="20000" is larger than the largest writable layer, runtime.rootfs_device_mib 10240`,
    );
  });
});
