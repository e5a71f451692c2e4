// Each container's writable layer on the host's disk, not in guest RAM: a
// sparse file of its own holding an empty ext4, attached to the VM as a
// writable virtio-blk disk; the agent mounts it and puts the overlay's
// upper/work directories on it, so the container's writes are bounded by the
// file's size (ENOSPC past it) and a container's limit is its own.
//
// A VM cloned from a template that premounted its writable slot
// (writable-premount.ts in the guest) gets, for a container with the
// template's limit, a copy of the template's disk instead (cp --sparse:
// ~4 MB of a 10 GiB file), so that its guest can take over that mount.
// Otherwise the file is formatted on the host when the container is created, in
// parallel with the VM's boot: no journal (the layer dies with its
// container; a crashed VM's writes are not kept), no reserved blocks, inode
// tables left for the kernel to treat as unused (lazy_itable_init; the guest
// mounts with noinit_itable, so it never zeroes them either). mkfs.ext4
// writes about 4 MB of a 10 GiB file and takes ~20 ms.
//
// The files live in <cacheDir>/scratch/<key of the sandbox>/, with a
// `sandbox` link to the sandbox's state directory: the directory is a ledger
// step (removed whole at teardown, and by `delete` after a dead shim), and
// one whose sandbox is gone (state lost with /run at a reboot) is removed by
// the next teardown's or `tern gc`'s reap.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, readlink, rm, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { RunAs } from '../common/run-as';
import { runCommand } from '../common/run-command';

export const SCRATCH_SUBDIR = 'scratch';
const SANDBOX_LINK = 'sandbox';
/** QEMU may open the files as hypervisor.run_as: it must pass through the directories. */
const DIR_MODE = 0o711;
const MKFS_TIMEOUT_MS = 30_000;
const MIB = 1024 * 1024;

/** Where mkfs.ext4 is (a shim under containerd may not have /sbin on its PATH). */
function mkfsPath(): string {
  return ['/usr/sbin/mkfs.ext4', '/sbin/mkfs.ext4'].find((p) => existsSync(p)) ?? 'mkfs.ext4';
}

function cpPath(): string {
  return ['/usr/bin/cp', '/bin/cp'].find((p) => existsSync(p)) ?? 'cp';
}

export function scratchRootOf(cacheDir: string): string {
  return join(cacheDir, SCRATCH_SUBDIR);
}

/** The scratch directory of the sandbox whose state directory is `sandboxDir`. */
export function scratchDirOf(cacheDir: string, sandboxDir: string): string {
  return join(scratchRootOf(cacheDir), createHash('sha256').update(sandboxDir).digest('hex').slice(0, 20));
}

/** One container's writable-layer disk. */
export interface ScratchDisk {
  /** The VM's device id, when it is hot-plugged. */
  id: string;
  /** What the guest sees in /sys/block/<dev>/serial. */
  serial: string;
  file: string;
  /** In the VM's writable slot (Vm.insertDisk), not a device of its own. */
  inSlot?: boolean;
  /** A copy of the template's premounted disk (ScratchDisks.make), not a filesystem of its own. */
  templateCopy?: boolean;
  /** The guest takes this disk's filesystem over from its premount (the first file in the slot of a template's clone). */
  premounted?: boolean;
}

/** A template's premounted writable disk (TemplateRecord.writable): its file and its filesystem's size. */
export interface WritableTemplate {
  file: string;
  fsMiB: number;
  /**
   * True while the template is still the one the VM was cloned from (not
   * removed and rebuilt meanwhile): a copy is that template's only if this
   * holds both before and after it.
   */
  unchanged: () => Promise<boolean>;
}

/**
 * Makes `file`, a sparse disk image of `deviceMiB` holding an empty ext4 of
 * `fsMiB` at its start (the limit: ENOSPC past it), owned by `owner` when
 * QEMU runs as another user. Every disk is the device's size whatever its
 * limit, so any of them fits the VM's writable slot, whose size the guest
 * read at boot.
 */
export async function makeScratchImage(file: string, deviceMiB: number, fsMiB: number, owner?: RunAs): Promise<void> {
  if (fsMiB > deviceMiB) throw new Error(`writable layer ${file}: a ${fsMiB} MiB filesystem does not fit a ${deviceMiB} MiB disk`);
  const fh = await open(file, 'wx', 0o600);
  try {
    await fh.truncate(deviceMiB * MIB);
  } finally {
    await fh.close();
  }
  try {
    // 4 KiB blocks whatever the size (mkfs would take 1 KiB ones below 512 MiB): a small disk (the pool's warm-up) then takes the kernel's paths a container's does.
    const args = [
      '-q',
      '-F',
      '-T',
      'default',
      '-b',
      '4096',
      '-m',
      '0',
      '-O',
      '^has_journal',
      '-E',
      'lazy_itable_init=1,nodiscard',
      '-L',
      'tern-rootfs',
      file,
      `${fsMiB}M`,
    ];
    await runCommand(mkfsPath(), args, { timeoutMs: MKFS_TIMEOUT_MS });
    if (owner) await chown(file, owner.uid, owner.gid);
  } catch (err) {
    await rm(file, { force: true });
    throw new Error(`writable layer ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Makes `file` a copy of the template's disk `from` (holes kept), owned by `owner` when QEMU runs as another user. */
export async function copyScratchImage(from: string, file: string, owner?: RunAs): Promise<void> {
  try {
    // The file must be new: -n would skip silently, so its absence is checked by the open.
    await (await open(file, 'wx', 0o600)).close();
    await runCommand(cpPath(), ['--sparse=always', '--', from, file], { timeoutMs: MKFS_TIMEOUT_MS });
    if (owner) await chown(file, owner.uid, owner.gid);
  } catch (err) {
    await rm(file, { force: true });
    throw new Error(`writable layer ${file} from ${from}: ${(err as Error).message}`, { cause: err });
  }
}

/** A sandbox's writable-layer files. */
export class ScratchDisks {
  private made?: Promise<void>;
  private seq = 0;

  constructor(
    readonly dir: string,
    private readonly sandboxDir: string,
    /** Every disk's size (runtime.rootfs_device_mib); a container's limit is its filesystem's. */
    readonly deviceMiB: number,
    private readonly owner?: RunAs,
  ) {}

  /** Makes the directory once, with its `sandbox` link. */
  private ensure(): Promise<void> {
    this.made ??= (async () => {
      const root = join(this.dir, '..');
      if ((await mkdir(root, { recursive: true, mode: DIR_MODE })) !== undefined) await chmod(root, DIR_MODE);
      await mkdir(this.dir, { recursive: true, mode: DIR_MODE });
      await chmod(this.dir, DIR_MODE);
      await symlink(this.sandboxDir, join(this.dir, SANDBOX_LINK)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    })();
    this.made.catch(() => (this.made = undefined));
    return this.made;
  }

  /**
   * A new disk for a container, its filesystem `limitMiB` large: a copy of
   * the VM's template's disk when there is one of that size (`template`
   * resolves once the boot knows), else a new filesystem. A copy that fails
   * (the template removed meanwhile) gives way to a new filesystem, and
   * `onCopyFailed` hears why.
   */
  async make(limitMiB: number, template?: Promise<WritableTemplate | undefined>, onCopyFailed?: (err: Error) => void): Promise<ScratchDisk> {
    await this.ensure();
    const n = ++this.seq;
    const disk = { id: `rootfs${n}`, serial: `tern-rw-${n}`, file: join(this.dir, `rootfs${n}.img`) };
    const from = await template;
    if (from && from.fsMiB === limitMiB && (await from.unchanged())) {
      try {
        await copyScratchImage(from.file, disk.file, this.owner);
        // A copy of another template's disk is still an empty filesystem of this size: the guest mounts it anew.
        return (await from.unchanged()) ? { ...disk, templateCopy: true } : disk;
      } catch (err) {
        onCopyFailed?.(err as Error);
      }
    }
    await makeScratchImage(disk.file, this.deviceMiB, limitMiB, this.owner);
    return disk;
  }

  /** Removes a disk's file (the VM, if it still has it open, keeps the blocks until it exits). */
  async remove(disk: ScratchDisk): Promise<void> {
    await rm(disk.file, { force: true });
  }
}

/** Removes a sandbox's scratch directory whole. */
export async function removeScratchDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Removes the scratch directories whose sandbox directory is gone; returns how many. */
export async function reapStaleScratch(cacheDir: string): Promise<number> {
  const root = scratchRootOf(cacheDir);
  let reaped = 0;
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const dir = join(root, name);
    const target = await readlink(join(dir, SANDBOX_LINK)).catch(() => undefined);
    if (target !== undefined && existsSync(target)) continue;
    // Without a link, only once it is old enough not to be one being made.
    if (target === undefined) {
      const st = await lstat(dir).catch(() => undefined);
      if (!st || Date.now() - st.mtimeMs < STALE_UNLINKED_MS) continue;
    }
    await removeScratchDir(dir);
    reaped++;
  }
  return reaped;
}

/** A scratch directory without its `sandbox` link this old is a leftover (making one takes milliseconds). */
const STALE_UNLINKED_MS = 10 * 60_000;
