#!/usr/bin/env bash
# Makes this Linux machine able to build nsguard for TARGET, a musl target (a static binary
# that runs on any Linux: RHEL 8, Amazon Linux 2, Alpine, distroless): the Rust standard
# library for TARGET through rustup, and musl-gcc (Debian's musl-tools) for ring's C and
# assembly. Installs only what is missing.
#
#   deploy/release/static.sh TARGET
set -euo pipefail

target=${1:?usage: static.sh TARGET (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl)}
case "$target" in
  *-linux-musl) ;;
  *) echo "static.sh: $target is not a musl target" >&2; exit 2 ;;
esac
need() { command -v "$1" >/dev/null 2>&1; }

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  need rustup || { echo "static.sh: rustup is needed to add the target $target" >&2; exit 1; }
  echo "static.sh: adding the Rust target $target" >&2
  rustup target add "$target" >&2
fi

if ! need musl-gcc; then
  need apt-get || { echo "static.sh: install musl-gcc (musl-tools) for ring's C code" >&2; exit 1; }
  sudo=()
  if ((EUID != 0)) && need sudo; then sudo=(sudo -n); fi
  echo "static.sh: installing musl-tools (musl-gcc)" >&2
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends musl-tools >&2
fi
