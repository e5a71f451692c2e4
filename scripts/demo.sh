#!/usr/bin/env bash
# The main job, end to end: a private containerd (its own config, root, state
# and sockets under one directory), a locally built busybox image, and one
# container run with tern inside a QEMU VM, printing the guest's kernel
# release next to the host's. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=docker.io/tern/busybox:test
NS=tern-demo
dir=$(mktemp -d /run/tern-demo.XXXXXX)
cpid=""
cleanup() {
  if [ -n "$cpid" ]; then kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi
  umount -R -l "$dir" 2>/dev/null || true
  grep -F " $dir/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
TOML

PATH="$PWD/build/bin:$PATH" containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
cpid=$!
ctr() { command ctr --address "$dir/containerd.sock" -n "$NS" "$@"; }
for _ in $(seq 1 100); do ctr version >/dev/null 2>&1 && break; sleep 0.1; done
ctr version >/dev/null || { cat "$dir/containerd.log" >&2; echo "demo: containerd did not start" >&2; exit 1; }

mkdir -p build
bash scripts/make-test-image.sh build/busybox-oci.tar
ctr images import build/busybox-oci.tar >/dev/null

echo "host kernel:  $(uname -r)"
start=$(date +%s%N)
guest=$(ctr run --rm --runtime io.containerd.tern.v2 "$IMAGE" tern-demo uname -r)
end=$(date +%s%N)
echo "guest kernel: $guest   (container in a tern VM, $(( (end - start) / 1000000 )) ms)"
[ -n "$guest" ] && [ "$guest" != "$(uname -r)" ]
