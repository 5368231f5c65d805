#!/usr/bin/env bash
# rootfs.sh BINARY CA_BUNDLE DIR: the file tree of trustgate's image, in DIR. Shared by
# build.sh (podman) and deploy/Dockerfile (docker), so both images hold the same files.
#
#   /usr/local/bin/trustgate               the static binary
#   /etc/ssl/certs/ca-certificates.crt     CA roots for https:// key URLs and upstreams
#                                          (rustls-native-certs finds them there)
#   /etc/passwd, /etc/group                the user 65532 (nonroot), for tools that ask
#   /etc/nsswitch.conf                     hosts: files dns — glibc's name lookup in a
#                                          static binary reads /etc/hosts, then the
#                                          pod's /etc/resolv.conf, as a dynamic one does
#   /etc/trustgate/, /tmp/                 empty: the config is mounted; /tmp for tools
set -euo pipefail
bin=$1 ca=$2 dir=$3
rm -rf "$dir"
install -D -m 0755 "$bin" "$dir/usr/local/bin/trustgate"
install -D -m 0644 "$ca" "$dir/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$dir/etc/trustgate" "$dir/tmp"
chmod 1777 "$dir/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
