#!/usr/bin/env bash
# Installs the Debian packages tern needs to build, run and test (QEMU, containerd,
# runc, gVisor, image tools, guest-image tools, compilers). Idempotent: runs
# `apt-get update` only when something is missing. Run as root on Debian 12.
# Starts no services.
set -euo pipefail

PACKAGES=(
  qemu-system-x86 qemu-utils
  containerd runc runsc
  umoci erofs-utils busybox-static
  kmod cpio e2fsprogs
  iproute2 iptables containernetworking-plugins
  util-linux bsdutils procps psmisc
  gcc libc6-dev make binutils xz-utils
  ca-certificates tmux
)

die() { echo "setup-host: error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script targets Debian 12"

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2; die "apt-get update failed"
  fi
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
    cat "$log" >&2; die "apt-get install failed for: ${missing[*]}"
  fi
fi

# Checks that the tools the project calls by name are really there.
for tool in qemu-system-x86_64 qemu-img containerd ctr containerd-shim-runc-v2 runc runsc \
            umoci mkfs.erofs busybox modinfo cpio mkfs.ext4 ip script ps fuser gcc make; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found after install"
done
[ -x /usr/lib/qemu/virtiofsd ] || die "/usr/lib/qemu/virtiofsd not found (package qemu-system-common)"

# Node.js 20+ comes with the machine (Debian 12's own nodejs is 18): check only.
if ! command -v node >/dev/null 2>&1; then
  die "node not found: install Node.js 20 or newer"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: 20 or newer is needed"

echo "setup-host: ok"
