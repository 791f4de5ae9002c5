#!/usr/bin/env bash
# Writes DIR/SHA256SUMS over every release archive in DIR (nsguard-*.tar.gz, the chart's
# nsguard-*.tgz) and SBOM (nsguard-*.spdx.json), in sha256sum's format:
# `cd DIR && sha256sum -c SHA256SUMS` verifies them.
set -euo pipefail
dir=${1:?usage: checksums.sh DIR}
cd "$dir"
shopt -s nullglob
files=(nsguard-*.tar.gz nsguard-*.tgz nsguard-*.spdx.json)
[[ ${#files[@]} -gt 0 ]] || { echo "checksums.sh: no archive in $dir" >&2; exit 1; }
if command -v sha256sum >/dev/null; then
  sha256sum -- "${files[@]}" >SHA256SUMS.tmp
else
  shasum -a 256 -- "${files[@]}" >SHA256SUMS.tmp
fi
sort -k 2 SHA256SUMS.tmp >SHA256SUMS
rm SHA256SUMS.tmp
