#!/usr/bin/env bash
# Builds the tern guest image from Debian packages and the host's Node:
#   vmlinuz      the Debian kernel (generic flavour by default: it has 9p)
#   vmlinux      the same kernel uncompressed (ELF with a PVH entry point):
#                QEMU boots it directly, skipping the bzImage decompressor,
#                which costs seconds under TCG
#   initrd.img   busybox-static, the kernel modules the guest needs, /init
#   guest.erofs  read-only image mounted at /opt/tern in the guest: node, its
#                shared libraries and loader, the agent bundle, tern-init (PID 1)
#                and tern-launch
#   manifest.json  the inputs the build used
# into OUT_ROOT/<hash of all inputs>/, only when that directory does not exist
# yet, then points OUT_ROOT/current at it. Prints the output directory on
# stdout (progress goes to stderr: on a terminal with CI unset, a live
# "[i/8] step" line, see progress.sh).
#
# Usage: guest-image/build.sh [VAR=VALUE...]   (or the same variables in the env)
#   AGENT_JS            the agent bundle, a single JS file (required)
#   OUT_ROOT            default /var/lib/tern/guest
#   CACHE_DIR           downloaded kernel packages; default /var/lib/tern/cache
#   KERNEL_META         kernel package, a meta package or a concrete one;
#                       default linux-image-amd64 (the cloud flavour has no 9p)
#   NODE_BIN            default /usr/bin/node
#   LAUNCHER_SRC        default guest-image/launcher/tern-launch.c
#   INITRD_COMPRESSION  none (default: boots faster under TCG) or gzip
# Needs the Debian packages kmod, cpio, busybox-static, erofs-utils, gcc, libc6-dev.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    AGENT_JS=*|OUT_ROOT=*|CACHE_DIR=*|KERNEL_META=*|NODE_BIN=*|LAUNCHER_SRC=*|INITRD_COMPRESSION=*)
      export "${arg?}" ;;
    *) echo "guest-image: error: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

KERNEL_META=${KERNEL_META:-linux-image-amd64}
OUT_ROOT=${OUT_ROOT:-/var/lib/tern/guest}
CACHE_DIR=${CACHE_DIR:-/var/lib/tern/cache}
NODE_BIN=${NODE_BIN:-/usr/bin/node}
LAUNCHER_SRC=${LAUNCHER_SRC:-$HERE/launcher/tern-launch.c}
INITRD_COMPRESSION=${INITRD_COMPRESSION:-none}
INIT_C=$HERE/init/tern-init.c
VMFORK_C=$HERE/init/tern-vmfork.c
INIT_SH=$HERE/init/init.sh
BUSYBOX=/bin/busybox
# Modules the guest loads, by name; their dependencies are added in load order
# and built-in ones are skipped. libcrc32c asks the crypto API for "crc32c" when
# it loads (a soft dependency, not in modules.dep), so crc32c_generic comes
# first: it is built into the cloud kernel, a module in the generic one.
# virtio_net carries the pod network. ext4 (with jbd2, mbcache, crc16) holds
# each container's writable layer, a disk the host formats. 9pnet_virtio and 9p serve the sandbox's
# shared directory (host volumes); modinfo pulls in 9pnet, netfs and fscache.
# They are optional: a kernel without them (the cloud flavour) still builds,
# and that guest simply has no host volumes. virtio_balloon reports free
# memory to the host (free page reporting): QEMU then drops those pages from
# its resident set; it is loaded at boot, so a template's clones have it.
MODULES=(virtio_pci virtio_blk virtio_console virtio-rng crc32c_generic libcrc32c erofs overlay ext4 virtio_net virtio_balloon)
OPTIONAL_MODULES=(9pnet_virtio 9p)

# shellcheck source=guest-image/progress.sh
. "$HERE/progress.sh"
log() { progress_clear; echo "guest-image: $*" >&2; }
die() { progress_end; echo "guest-image: error: $*" >&2; exit 1; }

# ---- check inputs and tools -------------------------------------------------
[ -n "${AGENT_JS:-}" ] || die "AGENT_JS is required (the agent bundle, one JS file)"
[ -f "$AGENT_JS" ] || die "AGENT_JS=$AGENT_JS: no such file"
[ -f "$LAUNCHER_SRC" ] || die "launcher source $LAUNCHER_SRC not found"
[ -f "$INIT_C" ] && [ -f "$VMFORK_C" ] && [ -f "$INIT_SH" ] || die "guest-image/init/ is incomplete"
[ -x "$NODE_BIN" ] || die "node binary $NODE_BIN not found"
case "$INITRD_COMPRESSION" in gzip|none) ;; *) die "INITRD_COMPRESSION must be gzip or none" ;; esac

need() { # need COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: install the Debian package $2 (apt-get install $2)"
}
need apt-get apt; need apt-cache apt; need dpkg-deb dpkg; need dpkg-query dpkg
need modinfo kmod; need depmod kmod; need cpio cpio; need mkfs.erofs erofs-utils; need gcc gcc
need gzip gzip; need xz xz-utils; need readelf binutils; need sha256sum coreutils; need ldd libc-bin; need flock util-linux
[ -x "$BUSYBOX" ] && dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null | grep -qx installed \
  || die "$BUSYBOX not found: install the Debian package busybox-static"
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || die "static libc not found: install the Debian package libc6-dev"

sha() { sha256sum "$1" | cut -d' ' -f1; }
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }

# ---- resolve the kernel package (needs apt lists; update once if missing) ---
resolve_kernel() { # sets KPKG and KVER from the candidate version of KERNEL_META
  local info
  info=$(apt-cache show --no-all-versions "$KERNEL_META" 2>/dev/null) || return 1
  KPKG= KVER=
  # A meta package depends on exactly one versioned linux-image-<abi>-<flavour>.
  read -r KPKG KVER < <(printf '%s\n' "$info" | awk '
    /^Depends:/ { n = split(substr($0, 10), d, ","); for (i = 1; i <= n; i++)
      if (match(d[i], /linux-image-[0-9][^ ]*( \(= [^)]*\))?/)) {
        s = substr(d[i], RSTART, RLENGTH); gsub(/[()=]/, "", s); print s; exit } }') || true
  if [ -z "$KPKG" ] && [[ "$KERNEL_META" =~ ^linux-image-[0-9] ]]; then
    KPKG=$KERNEL_META
    KVER=$(printf '%s\n' "$info" | awk '/^Version:/ { print $2; exit }')
  fi
  [ -n "$KPKG" ] || return 1
  if [ -z "$KVER" ]; then
    KVER=$(apt-cache show --no-all-versions "$KPKG" 2>/dev/null | awk '/^Version:/ { print $2; exit }')
  fi
  [ -n "$KVER" ]
}
apt_update() {
  [ "$(id -u)" -eq 0 ] || die "apt lists are missing or stale and only root can run 'apt-get update'"
  log "running apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed"
}
if ! resolve_kernel; then
  apt_update
  resolve_kernel || die "cannot resolve a kernel package from $KERNEL_META (apt-cache show $KERNEL_META)"
fi

# ---- hash every input --------------------------------------------------------
NODE_REAL=$(readlink -f "$NODE_BIN")
LOADER=
LIBS=()
while read -r line; do
  case "$line" in
    *"=> /"*) lib=${line#*=> }; LIBS+=("${lib%% (*}") ;;
    /*ld-linux*) LOADER=${line%% (*} ;;
  esac
done < <(ldd "$NODE_REAL")
[ -n "$LOADER" ] || die "cannot find the dynamic loader of $NODE_REAL in ldd's output"

INPUTS=$(
  echo "kernel-meta $KERNEL_META"
  echo "kernel $KPKG $KVER"
  echo "modules ${MODULES[*]} optional ${OPTIONAL_MODULES[*]}"
  echo "initrd-compression $INITRD_COMPRESSION"
  echo "busybox-static $(pkgver busybox-static)"
  echo "erofs-utils $(pkgver erofs-utils)"
  echo "gcc $(gcc -dumpfullversion) libc6-dev $(pkgver libc6-dev)"
  echo "node $(sha "$NODE_REAL")"
  echo "loader $LOADER $(sha "$LOADER")"
  for l in "${LIBS[@]}"; do echo "lib $l $(sha "$l")"; done
  echo "agent $(sha "$AGENT_JS")"
  echo "tern-launch.c $(sha "$LAUNCHER_SRC")"
  echo "tern-init.c $(sha "$INIT_C")"
  echo "tern-vmfork.c $(sha "$VMFORK_C")"
  echo "init.sh $(sha "$INIT_SH")"
  echo "build.sh $(sha "${BASH_SOURCE[0]}")"
)
HASH=$(printf '%s\n' "$INPUTS" | sha256sum | cut -c1-16)

mkdir -p "$OUT_ROOT" || die "cannot create $OUT_ROOT"
OUT_ROOT=$(cd "$OUT_ROOT" && pwd)
OUT=$OUT_ROOT/$HASH
exec 9>"$OUT_ROOT/.lock"
flock -w 600 9 || die "another build holds $OUT_ROOT/.lock"
rm -rf "$OUT_ROOT"/.build.* "$OUT_ROOT"/.current.* # left by a killed build

point_current() {
  ln -sfn "$HASH" "$OUT_ROOT/.current.$$"
  mv -T "$OUT_ROOT/.current.$$" "$OUT_ROOT/current"
}

if [ -f "$OUT/manifest.json" ]; then
  point_current
  log "up to date: $OUT"
  echo "$OUT"
  exit 0
fi

# ---- build into a temp dir ---------------------------------------------------
WORK=$(mktemp -d "$OUT_ROOT/.build.XXXXXX")
trap 'progress_end; rm -rf "$WORK" "$OUT_ROOT/.current.$$"' EXIT
log "building $HASH (kernel $KPKG $KVER, initramfs $INITRD_COMPRESSION)"
progress_init 8

progress_step 1 "kernel package $KPKG"

# Kernel package: cached by name and version.
DEB=$CACHE_DIR/debs/${KPKG}_${KVER}_amd64.deb
if [ ! -f "$DEB" ]; then
  mkdir -p "$CACHE_DIR/debs"
  dl=$(mktemp -d "$CACHE_DIR/debs/.dl.XXXXXX")
  aptopts=()
  [ "$(id -u)" -ne 0 ] || aptopts=(-o APT::Sandbox::User=root)
  log "downloading $KPKG=$KVER"
  if ! (cd "$dl" && apt-get download -q "${aptopts[@]}" "$KPKG=$KVER" >&2); then
    apt_update
    (cd "$dl" && apt-get download -q "${aptopts[@]}" "$KPKG=$KVER" >&2) \
      || { rm -rf "$dl"; die "apt-get download $KPKG=$KVER failed"; }
  fi
  got=$(ls "$dl"/*.deb 2>/dev/null | head -n1)
  [ -n "$got" ] || { rm -rf "$dl"; die "apt-get download $KPKG=$KVER produced no .deb"; }
  mv -f "$got" "$DEB"
  rm -rf "$dl"
fi

progress_step 2 "unpacking the kernel"
KROOT=$WORK/kernel
dpkg-deb -x "$DEB" "$KROOT" || die "cannot unpack $DEB"
VMLINUZ=$(ls "$KROOT"/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$VMLINUZ" ] || die "$DEB has no boot/vmlinuz-*"
KREL=${VMLINUZ##*/vmlinuz-}
MODROOT=$KROOT/lib/modules/$KREL

progress_step 3 "kernel modules"
# Module name -> file (names compare with '-' and '_' alike).
declare -A MODFILE=()
while IFS= read -r f; do
  n=${f##*/}; n=${n%%.ko*}; MODFILE[${n//-/_}]=$f
done < <(find "$MODROOT/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
builtin_mod() { grep -q "/${1//_/[-_]}\.ko\$" "$MODROOT/modules.builtin" 2>/dev/null; }

ORDER=()
declare -A SEEN=()
add_module() { # depth-first: dependencies before the module
  local key=${1//-/_} dep
  [ -z "${SEEN[$key]:-}" ] || return 0
  SEEN[$key]=1
  if [ -z "${MODFILE[$key]:-}" ]; then
    builtin_mod "$key" && return 0
    die "kernel module $1 not found in $KPKG"
  fi
  for dep in $(modinfo -F depends "${MODFILE[$key]}" | tr ',' ' '); do add_module "$dep"; done
  ORDER+=("$key")
}
for m in "${MODULES[@]}"; do add_module "$m"; done
MISSING_OPTIONAL=()
for m in "${OPTIONAL_MODULES[@]}"; do
  if [ -n "${MODFILE[${m//-/_}]:-}" ] || builtin_mod "${m//-/_}"; then
    add_module "$m"
  else
    MISSING_OPTIONAL+=("$m")
    log "warning: $KPKG has no module $m: the guest will have no host volumes (9p)"
  fi
done

# initramfs tree.
progress_step 4 "initramfs tree"
IR=$WORK/initramfs
mkdir -p "$IR"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,root,etc,opt/tern,lib/modules/tern}
cp "$BUSYBOX" "$IR/bin/busybox"
while read -r applet; do
  case "$applet" in bin/busybox|linuxrc|"") continue ;; esac
  mkdir -p "$IR/$(dirname "$applet")"
  [ -e "$IR/$applet" ] || ln -s /bin/busybox "$IR/$applet"
done < <("$BUSYBOX" --list-full)
for key in "${ORDER[@]}"; do
  src=${MODFILE[$key]}; dst=$IR/lib/modules/tern/$key.ko
  case "$src" in
    *.ko) cp "$src" "$dst" ;;
    *.ko.xz) need xz xz-utils; xz -dc "$src" >"$dst" ;;
    *.ko.zst) need zstd zstd; zstd -qdc "$src" >"$dst" ;;
    *.ko.gz) gzip -dc "$src" >"$dst" ;;
  esac
  echo "$key" >>"$IR/lib/modules/tern/load-order"
done
install -m 0755 "$INIT_SH" "$IR/init"
ln -s /opt/tern/lib64 "$IR/lib64"
ln -s /opt/tern/lib/x86_64-linux-gnu "$IR/lib/x86_64-linux-gnu"

# erofs tree (mounted at /opt/tern in the guest).
progress_step 5 "guest files: node, libraries, agent, tern-init, tern-launch"
G=$WORK/guest
mkdir -p "$G"/{bin,sbin,lib64,lib/x86_64-linux-gnu,lib/tern}
cp "$NODE_REAL" "$G/bin/node"
cp -L "$LOADER" "$G/lib64/${LOADER##*/}"
for l in "${LIBS[@]}"; do cp -L "$l" "$G/lib/x86_64-linux-gnu/${l##*/}"; done
install -m 0644 "$AGENT_JS" "$G/lib/tern/agent.js"
gcc -O2 -static -Wall -o "$G/sbin/tern-init" "$INIT_C" || die "cannot compile $INIT_C"
gcc -O2 -static -Wall -o "$G/sbin/tern-vmfork" "$VMFORK_C" || die "cannot compile $VMFORK_C"
gcc -O2 -static -Wall -o "$G/sbin/tern-launch" "$LAUNCHER_SRC" || die "cannot compile $LAUNCHER_SRC"

# Kernel modules a node normally has, loaded on demand: a container with
# CAP_NET_ADMIN (or a privileged one) that makes a bridge, a tun or veth
# device, an iptables/nftables rule or an IPVS service makes the guest kernel
# run /sbin/modprobe (busybox) for it. They live in the erofs image (read from
# the disk when asked, never in guest RAM) under /opt/tern/modules/<release>,
# where /lib/modules/<release> in the initramfs points; depmod indexes them.
ONDEMAND_NET_SKIP='^(wireless|mac80211|bluetooth|nfc|ieee802154|mac802154|6lowpan|appletalk|ax25|netrom|rose|atm|can|phonet|batman-adv|rds|rxrpc|sunrpc|ceph|qrtr|rfkill|9p|lapb|smc|tipc|kcm)$'
ONDEMAND_DRIVERS=(tun veth dummy ifb macvlan macvtap tap vrf geneve nlmon macsec vxlan ipvlan bonding team wireguard)
ODM=$WORK/ondemand/lib/modules/$KREL
mkdir -p "$ODM"
declare -A ODM_SEEN=()
ondemand_add() { # ondemand_add FILE: the module and what it depends on, at its path under the release
  local f=$1 key rel dep
  key=${f##*/}; key=${key%%.ko*}; key=${key//-/_}
  [ -z "${ODM_SEEN[$key]:-}" ] || return 0
  ODM_SEEN[$key]=1
  rel=${f#"$MODROOT"/}
  mkdir -p "$ODM/$(dirname "$rel")"
  case "$f" in
    *.ko) cp "$f" "$ODM/$rel" ;;
    *.ko.xz) xz -dc "$f" >"$ODM/${rel%.xz}" ;;
    *.ko.zst) need zstd zstd; zstd -qdc "$f" >"$ODM/${rel%.zst}" ;;
    *.ko.gz) gzip -dc "$f" >"$ODM/${rel%.gz}" ;;
  esac
  for dep in $(modinfo -F depends "$f" | tr ',' ' '); do
    dep=${dep//-/_}
    [ -n "${MODFILE[$dep]:-}" ] && ondemand_add "${MODFILE[$dep]}"
  done
  return 0
}
for d in "$MODROOT"/kernel/net/*/; do
  n=$(basename "$d"); [[ "$n" =~ $ONDEMAND_NET_SKIP ]] && continue
  while IFS= read -r f; do ondemand_add "$f"; done < <(find "$d" -name '*.ko*' | LC_ALL=C sort)
done
for n in "${ONDEMAND_DRIVERS[@]}"; do
  while IFS= read -r f; do ondemand_add "$f"; done < <(find "$MODROOT/kernel/drivers/net" -maxdepth 2 \( -path "*/net/$n.ko*" -o -path "*/net/$n/*.ko*" \) | LC_ALL=C sort)
done
cp "$MODROOT"/modules.builtin* "$MODROOT"/modules.order "$ODM/" 2>/dev/null || true
depmod -b "$WORK/ondemand" "$KREL" || die "depmod of the on-demand modules failed"
mkdir -p "$G/modules"
mv "$ODM" "$G/modules/$KREL"
ln -s "/opt/tern/modules/$KREL" "$IR/lib/modules/$KREL"
log "on-demand kernel modules: ${#ODM_SEEN[@]} ($(du -sh "$G/modules/$KREL" | cut -f1))"
chmod -R go-w "$G"

# Images.
R=$WORK/out
mkdir -p "$R"
cp "$VMLINUZ" "$R/vmlinuz"
# The bzImage carries the kernel compressed (xz, zstd or gzip) after its
# decompressor stub: find the stream by its magic, decompress it, and keep it
# only if it is an ELF with the PVH entry note (Xen note type 0x12), which is
# what lets QEMU start it without the stub (kernel start 6.4 s -> 0.9 s after
# QEMU launch under TCG, measured with the generic kernel).
extract_vmlinux() { # extract_vmlinux BZIMAGE OUT
  local magic cmd off
  for pair in 'fd377a585a00:xz -dc' '28b52ffd:zstd -dc' '1f8b0800:gzip -dc'; do
    magic=${pair%%:*}; cmd=${pair#*:}
    command -v "${cmd%% *}" >/dev/null 2>&1 || continue
    for off in $(LC_ALL=C grep -obUaP "$(echo "$magic" | sed 's/../\\x&/g')" "$1" | cut -d: -f1 | head -n 4); do
      tail -c "+$((off + 1))" "$1" | $cmd >"$2" 2>/dev/null || true
      if [ "$(head -c 4 "$2" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] \
        && readelf -n "$2" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)'; then
        return 0
      fi
    done
  done
  rm -f "$2"
  return 1
}
progress_step 6 "uncompressed vmlinux"
extract_vmlinux "$VMLINUZ" "$R/vmlinux" || die "cannot extract an uncompressed PVH-bootable vmlinux from $VMLINUZ"
progress_step 7 "guest.erofs"
mkfs.erofs --quiet --all-root -T0 -x-1 "$R/guest.erofs" "$G" >&2 || die "mkfs.erofs failed"
progress_step 8 "initrd.img and manifest.json"
(
  cd "$IR"
  find . -mindepth 1 -print0 | LC_ALL=C sort -z \
    | cpio --null --quiet -o -H newc --owner=0:0 --reproducible
) >"$R/initrd.cpio" || die "cpio failed"
if [ "$INITRD_COMPRESSION" = gzip ]; then
  gzip -n -9 -c "$R/initrd.cpio" >"$R/initrd.img"; rm -f "$R/initrd.cpio"
else
  mv "$R/initrd.cpio" "$R/initrd.img"
fi

# Manifest (written with node: correct JSON escaping).
libs_json=$(for l in "$LOADER" "${LIBS[@]}"; do printf '%s\n' "$l"; done)
M_HASH=$HASH M_KMETA=$KERNEL_META M_KPKG=$KPKG M_KVER=$KVER M_KREL=$KREL \
M_MODS="${MODULES[*]} ${OPTIONAL_MODULES[*]}" M_MISSING="${MISSING_OPTIONAL[*]}" M_ORDER="${ORDER[*]}" M_COMP=$INITRD_COMPRESSION \
M_BB=$(pkgver busybox-static) M_EROFS=$(pkgver erofs-utils) M_GCC=$(gcc -dumpfullversion) \
M_NODEV=$("$NODE_REAL" --version) M_INPUTS=$INPUTS M_LIBS=$libs_json M_DIR=$R \
"$NODE_REAL" -e '
  const fs = require("fs"); const e = process.env;
  const inputs = {};
  for (const line of e.M_INPUTS.split("\n")) {
    const i = line.indexOf(" "); const k = line.slice(0, i); const v = line.slice(i + 1);
    if (k === "lib") { (inputs.libs ??= []).push(v); } else { inputs[k] = v; }
  }
  const size = (f) => fs.statSync(e.M_DIR + "/" + f).size;
  const m = {
    hash: e.M_HASH,
    kernel: { meta: e.M_KMETA, package: e.M_KPKG, version: e.M_KVER, release: e.M_KREL },
    modules: { requested: e.M_MODS.split(" "), missingOptional: e.M_MISSING.split(" ").filter(Boolean), loadOrder: e.M_ORDER.split(" ") },
    initrdCompression: e.M_COMP,
    busyboxVersion: e.M_BB, erofsUtilsVersion: e.M_EROFS, gccVersion: e.M_GCC,
    nodeVersion: e.M_NODEV,
    libraries: e.M_LIBS.split("\n").filter(Boolean),
    inputs,
    guest: {
      disk: { file: "guest.erofs", serial: "tern-guest", mountPoint: "/opt/tern", fsType: "erofs" },
      node: "/opt/tern/bin/node", agent: "/opt/tern/lib/tern/agent.js",
      init: "/opt/tern/sbin/tern-init", launcher: "/opt/tern/sbin/tern-launch",
      agentPort: "tern.agent", console: "ttyS0",
    },
    files: { vmlinuz: size("vmlinuz"), vmlinux: size("vmlinux"), "initrd.img": size("initrd.img"), "guest.erofs": size("guest.erofs") },
    builtAt: new Date().toISOString(),
  };
  fs.writeFileSync(e.M_DIR + "/manifest.json", JSON.stringify(m, null, 2) + "\n");
' || die "cannot write manifest.json"

chmod 0755 "$R"
chmod 0644 "$R"/*
mv -T "$R" "$OUT" || die "cannot move the build to $OUT"
point_current
progress_end
log "built $OUT"
echo "$OUT"
