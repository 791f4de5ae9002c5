#!/usr/bin/env bash
# Packs one release archive of nsguard and refreshes the checksums file beside it.
#
#   deploy/release/dist.sh TARGET BINARY [OUT_DIR]
#
# TARGET is a Rust target triple: x86_64-unknown-linux-musl and aarch64-unknown-linux-musl
# (static: what the release ships for Linux; the -gnu triples still pack, for a local
# build), x86_64-apple-darwin, aarch64-apple-darwin, x86_64-pc-windows-msvc; BINARY the
# nsguard built for it; OUT_DIR defaults to target/dist. Writes
# OUT_DIR/nsguard-vVERSION-OS-ARCH.tar.gz holding the binary (nsguard; on Windows
# kubectl-nsguard.exe, the kubectl plugin), kubectl_complete-nsguard (kubectl's completion of
# the plugin), LICENSE, README.md and completions/ (bash, zsh, fish), then OUT_DIR/SHA256SUMS
# over every archive in OUT_DIR. The completions come from running a binary of the same
# version: BINARY, or $NSGUARD_HOST_BIN when BINARY cannot run here (a cross build).
# The archive is reproducible: sorted names, fixed owner and mode, mtime of the last commit.
set -euo pipefail

target=${1:?usage: dist.sh TARGET BINARY [OUT_DIR]}
binary=${2:?usage: dist.sh TARGET BINARY [OUT_DIR]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${3:-$root/target/dist}
host_bin=${NSGUARD_HOST_BIN:-$binary}

bin=nsguard
complete=kubectl_complete-nsguard
case "$target" in
  x86_64-unknown-linux-musl | x86_64-unknown-linux-gnu) platform=linux-amd64 ;;
  aarch64-unknown-linux-musl | aarch64-unknown-linux-gnu) platform=linux-arm64 ;;
  x86_64-apple-darwin) platform=darwin-amd64 ;;
  aarch64-apple-darwin) platform=darwin-arm64 ;;
  # krew and kubectl find a plugin on Windows by this name; no symlink to rely on there.
  x86_64-pc-windows-msvc) platform=windows-amd64 bin=kubectl-nsguard.exe complete=kubectl_complete-nsguard.cmd ;;
  *) echo "dist.sh: unknown target $target" >&2; exit 2 ;;
esac

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
[[ -n "$version" ]] || { echo "dist.sh: no version in Cargo.toml" >&2; exit 1; }
reported=$("$host_bin" --version)
[[ "$reported" == "nsguard $version" ]] ||
  { echo "dist.sh: $host_bin says '$reported', Cargo.toml says $version" >&2; exit 1; }

# GNU tar (gtar on macOS) for --sort and --owner.
tar=tar
if ! tar --version 2>/dev/null | grep -q GNU; then tar=gtar; fi
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
mtime=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}

name="nsguard-v$version-$platform"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/completions" "$out"
install -m 0755 "$binary" "$stage/$bin"
# The symbol table only (the release profile carries no debug info): about a quarter smaller.
# (MSVC keeps its symbols in a .pdb beside the .exe: nothing to strip.)
if [[ "$bin" != *.exe ]]; then strip "$stage/$bin"; fi
install -m 0755 "$root/deploy/krew/$complete" "$stage/$complete"
install -m 0644 "$root/LICENSE" "$root/README.md" "$stage/"
"$host_bin" completion bash >"$stage/completions/nsguard.bash"
"$host_bin" completion zsh >"$stage/completions/_nsguard"
"$host_bin" completion fish >"$stage/completions/nsguard.fish"
chmod 0644 "$stage/completions/"*

"$tar" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
  -C "$stage" -cf - "$bin" "$complete" LICENSE README.md completions | gzip -n -9 >"$out/$name.tar.gz"

# One checksums file for every archive of this directory (sha256sum -c SHA256SUMS).
"$root/deploy/release/checksums.sh" "$out"
echo "$out/$name.tar.gz"
