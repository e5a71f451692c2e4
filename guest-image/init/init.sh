#!/bin/sh
# /init of the tern guest initramfs (busybox sh). Mounts the kernel filesystems,
# loads the kernel modules listed in /lib/modules/tern/load-order, mounts the
# read-only erofs guest image (the virtio-blk disk with serial "tern-guest") at
# /opt/tern, mounts the sandbox's shared directory (virtio-9p tag tern-shared,
# when present) at /run/tern-agent/shared and hands PID 1 over to tern-init,
# which runs the Node agent.
# Any failure is printed on the console and the VM is powered off, so QEMU exits.
export PATH=/bin:/sbin

# The initramfs root ("rootfs") cannot be pivot_root'ed away from, which
# containers need. First pass: copy the (small) initramfs into a tmpfs and
# switch_root into it; second pass (marker present): carry on from there.
if [ ! -e /.tern-root ]; then
	mkdir -p /newroot
	mount -t tmpfs -o mode=0755 tmpfs /newroot
	for f in /*; do
		case "$f" in /newroot|/proc|/sys|/dev) ;; *) cp -a "$f" /newroot/ ;; esac
	done
	mkdir -p /newroot/proc /newroot/sys /newroot/dev
	: >/newroot/.tern-root
	exec switch_root /newroot /init
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

fail() {
	echo "tern-guest: error: $*"
	sync
	poweroff -f
	exit 1
}

MODDIR=/lib/modules/tern
while read -r mod; do
	[ -n "$mod" ] || continue
	insmod "$MODDIR/$mod.ko" || fail "cannot load kernel module $mod"
done < "$MODDIR/load-order"

# Find the guest image disk by its virtio serial; probing is normally done by
# the time virtio_blk is loaded, but wait up to 5 s for it.
disk=
tries=0
while [ -z "$disk" ]; do
	for s in /sys/block/vd*/serial; do
		[ -r "$s" ] || continue
		if [ "$(cat "$s")" = "tern-guest" ]; then
			d=${s%/serial}
			disk=/dev/${d##*/}
			break
		fi
	done
	[ -n "$disk" ] && break
	tries=$((tries + 1))
	[ "$tries" -le 250 ] || fail "no virtio-blk disk with serial tern-guest (attach guest.erofs with serial=tern-guest)"
	usleep 20000
done
[ -b "$disk" ] || fail "$disk is not a block device"

mount -t erofs -o ro "$disk" /opt/tern || fail "cannot mount $disk (erofs) at /opt/tern"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "cannot mount cgroup2 at /sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run || fail "cannot mount /run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp || fail "cannot mount /tmp"
# The sandbox's shared directory (host volumes, bound into it on the host),
# when the VM has the virtio-9p device tagged tern-shared. No cache: what the
# host or another VM writes is seen at once. A template VM (tern.template=1 on
# the kernel command line) leaves it unmounted: a mounted 9p export blocks
# saving the VM; each clone's agent mounts its own (tern-vmfork).
cmdline=" $(cat /proc/cmdline) "
template=
case "$cmdline" in *" tern.template=1 "*) template=1 ;; esac
[ -n "$template" ] || for t in /sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag; do
	[ -r "$t" ] || continue
	[ "$(tr -d '\000' < "$t")" = "tern-shared" ] || continue
	mkdir -p /run/tern-agent/shared
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none tern-shared /run/tern-agent/shared \
		|| fail "cannot mount the shared directory (9p tag tern-shared) at /run/tern-agent/shared"
	break
done
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts || fail "cannot mount /dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || fail "cannot mount /dev/shm"
ip link set lo up 2>/dev/null
hostname tern
# An idle guest should not wake: every guest timer costs the host a vCPU and a
# main-loop wake-up under TCG. Proactive compaction checks every 500 ms (a
# VM's memory is the host's to compact), vmstat folds its counters every
# second (10 s is enough for the few readers), and the soft-lockup watchdog
# ticks every 4 s (a stalled vCPU is the host's to see).
echo 0 > /proc/sys/vm/compaction_proactiveness 2>/dev/null
echo 10 > /proc/sys/vm/stat_interval 2>/dev/null
echo 0 > /proc/sys/kernel/watchdog 2>/dev/null

# node's loader and shared libraries live in the image; these links are also
# baked into the initramfs, this only repairs them if missing.
[ -e /lib64/ld-linux-x86-64.so.2 ] || ln -sfn /opt/tern/lib64 /lib64
[ -e /lib/x86_64-linux-gnu/libc.so.6 ] || ln -sfn /opt/tern/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu

export PATH=/opt/tern/bin:/opt/tern/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/
[ -x /opt/tern/sbin/tern-init ] || fail "/opt/tern/sbin/tern-init missing from the guest image"
# The agent's V8 only interprets (--jitless): under TCG, machine code V8
# compiles is translated again by QEMU in every clone and held in its
# translation cache (measured: 8 MiB less PSS per idle VM, starts no slower).
# tern.agent_jit=1 ([agent] jit = true) lets it compile, e.g. under KVM.
# No memory reducer: once idle it compacts the agent's heap (~2 MiB smaller),
# which writes to pages a clone shares with its template, so they are copied:
# measured on an idle clone, two such GCs 40 and 65 s after the start cost
# ~350 ms of QEMU CPU and added ~15 MiB to QEMU's PSS. The heap still grows
# and is collected as usual.
agent_flags="--no-memory-reducer --jitless"
case "$cmdline" in *" tern.agent_jit=1 "*) agent_flags=--no-memory-reducer ;; esac
# A template's agent compiles its whole bundle when it loads it (--no-lazy),
# so its clones find every function compiled: lazily, each function a clone
# runs for the first time (AdoptIdentity, the OOM wait, ...) is parsed and
# compiled there, and V8's parser is translated afresh by every clone's QEMU.
# Measured on held clones (QEMU's `info jit`, with the node warm-up of
# warmup.ts): 68.6-68.9k translated blocks instead of 75.7-76.4k, 38.3 MiB of
# translated code instead of 42.6-43.0, ~6 MiB less PSS per QEMU. A VM booted
# for itself keeps lazy compiling: eagerly, its boot took ~0.5 s longer.
# It also collects its heap before it serves (main.ts, through --expose-gc).
[ -n "$template" ] && agent_flags="$agent_flags --no-lazy --expose-gc"
# tern.agent_v8=FLAG[,FLAG...] (kernel_params) adds V8 flags to the agent's,
# e.g. to measure one against the default: tern.agent_v8=--no-flush-bytecode
for word in $cmdline; do
  case "$word" in
    tern.agent_v8=*)
      old_ifs=$IFS
      IFS=,
      for flag in ${word#tern.agent_v8=}; do agent_flags="$agent_flags $flag"; done
      IFS=$old_ifs
      ;;
  esac
done
exec /opt/tern/sbin/tern-init /opt/tern/bin/node $agent_flags /opt/tern/lib/tern/agent.js
