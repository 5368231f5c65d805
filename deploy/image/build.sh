#!/usr/bin/env bash
# deploy/image/build.sh [TAG] — builds localhost/trustgate:TAG (default: the crate's
# version) with podman, from nothing pulled from a registry:
#
#   1. a statically linked, stripped release binary (glibc's crt-static: it runs in an
#      empty image, and resolves names through /etc/hosts and the pod's resolv.conf);
#   2. its file tree (rootfs.sh): the binary, a CA bundle, user 65532, nsswitch.conf;
#   3. `podman build` of Containerfile (FROM scratch) with OCI labels.
#
# Everything but the image name goes to stderr: the last line of output is the name.
# Installs podman (and runc) with apt-get when missing and run as root. The podman
# settings this kind of machine needs come from containers.conf beside this script
# (CONTAINERS_CONF; set your own to override). TRUSTGATE_STATIC_BIN=path skips step 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cd "$top"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
tag=${1:-$version}
image="localhost/trustgate:$tag"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
max_bytes=$((15 * 1000 * 1000))

say() { echo "build.sh: $*" >&2; }

need=()
command -v podman >/dev/null 2>&1 || need+=(podman runc)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v readelf >/dev/null 2>&1 || need+=(binutils)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "missing ${need[*]}, and not root: install them first"
        exit 1
    fi
    say "installing ${need[*]}"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

bin=${TRUSTGATE_STATIC_BIN:-}
if [ -z "$bin" ]; then
    # --target (the host's own triple) keeps build scripts and proc-macros dynamic;
    # only the binary is linked statically.
    triple=$(rustc -vV | sed -n 's/^host: //p')
    say "cargo build --release --target $triple (static, stripped)"
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
        CARGO_PROFILE_RELEASE_STRIP=symbols \
        cargo build --release --locked --target "$triple" --bin trustgate >&2
    bin=target/$triple/release/trustgate
fi
if readelf -l "$bin" | grep -q 'program interpreter'; then
    say "$bin is dynamically linked: it would not run in an empty image"
    exit 1
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/Containerfile" "$ctx/Containerfile"
"$here/rootfs.sh" "$bin" /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs"

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
source_url=$(git config --get remote.origin.url 2>/dev/null || echo "https://github.com/trustgate/trustgate")
say "podman build $image"
podman build --pull=never --format oci -t "$image" \
    --label "org.opencontainers.image.title=trustgate" \
    --label "org.opencontainers.image.description=Sidecar reverse proxy: services trust each other by signed tokens" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.licenses=Apache-2.0" \
    --label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$ctx" >&2

size=$(podman image inspect --format '{{.Size}}' "$image")
say "$image: $size bytes"
if [ "$size" -gt "$max_bytes" ]; then
    say "the image is over $max_bytes bytes"
    exit 1
fi
echo "$image"
