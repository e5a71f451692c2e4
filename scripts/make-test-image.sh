#!/usr/bin/env bash
# Builds a small OCI image (busybox-static, no network) as an OCI-layout tar that
# `ctr images import` accepts; the image is named docker.io/tern/busybox:test.
# Usage: make-test-image.sh OUT.tar
# Deterministic (fixed timestamps, sorted contents) and cached: does nothing when
# OUT.tar exists and is newer than this script.
set -euo pipefail

IMAGE_NAME="docker.io/tern/busybox:test"
TAG="test"
EPOCH="2024-01-01T00:00:00Z"

die() { echo "make-test-image: error: $*" >&2; exit 1; }

[ "$#" -eq 1 ] || die "usage: $0 OUT.tar"
out=$1
self=$(readlink -f "$0")

if [ -f "$out" ] && [ "$out" -nt "$self" ]; then
  exit 0
fi

for tool in umoci busybox tar node; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run scripts/setup-host.sh)"
done
bb=$(readlink -f "$(command -v busybox)")
if command -v file >/dev/null 2>&1 && file -b "$bb" | grep -q dynamically; then
  die "$bb is not static (install busybox-static)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tern-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$work/layout"
bundle="$work/bundle"

umoci init --layout "$layout"
umoci new --image "$layout:$TAG"
umoci unpack --image "$layout:$TAG" "$bundle" >/dev/null

rootfs="$bundle/rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,proc,sys,dev,var/tmp}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
chmod 0700 "$rootfs/root"
install -m 0755 "$bb" "$rootfs/bin/busybox"
# One symlink per applet, at the place busybox itself would install it.
busybox --list-full | LC_ALL=C sort | while read -r applet; do
  case "$applet" in
    */*) ;;
    *) continue ;;
  esac
  [ "$applet" = "bin/busybox" ] && continue
  [ -e "$rootfs/$applet" ] || ln -s /bin/busybox "$rootfs/$applet"
done
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo "tern-test" >"$rootfs/etc/hostname"
# Fixed timestamps so the layer digest does not depend on when it was built.
find "$rootfs" -exec touch -h -d "$EPOCH" {} +

umoci repack --image "$layout:$TAG" --history.created "$EPOCH" \
  --history.created_by "make-test-image.sh" --history.author tern "$bundle"
umoci config --image "$layout:$TAG" --history.created "$EPOCH" \
  --history.created_by "make-test-image.sh" --history.author tern \
  --created "$EPOCH" --author tern \
  --config.cmd sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir /
umoci gc --layout "$layout"

# Give the index entry the full image name too, so that ctr names it without --base-name.
node -e '
const fs = require("fs");
const [file, name] = process.argv.slice(1);
const index = JSON.parse(fs.readFileSync(file, "utf8"));
for (const m of index.manifests) {
  m.annotations = { ...(m.annotations || {}), "io.containerd.image.name": name };
}
fs.writeFileSync(file, JSON.stringify(index));
' "$layout/index.json" "$IMAGE_NAME"

find "$layout" -exec touch -h -d "$EPOCH" {} +
mkdir -p "$(dirname "$out")"
tmp_out="$out.tmp.$$"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$EPOCH" \
  -C "$layout" -cf "$tmp_out" .
mv -f "$tmp_out" "$out"
