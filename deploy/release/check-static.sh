#!/usr/bin/env bash
# Fails unless BINARY is a static executable that runs here: no dynamic loader, no shared
# library (so no glibc version to match), and `BINARY --version` says VERSION.
#
#   deploy/release/check-static.sh BINARY VERSION
set -euo pipefail

binary=${1:?usage: check-static.sh BINARY VERSION}
version=${2:?usage: check-static.sh BINARY VERSION}

# ldd says "not a dynamic executable" (glibc) or "statically linked" and may exit non-zero.
said=$(ldd "$binary" 2>&1 || true)
if ! grep -Eq 'not a dynamic executable|statically linked' <<<"$said"; then
  echo "check-static.sh: $binary is dynamically linked:" >&2
  echo "$said" >&2
  exit 1
fi
# No program interpreter either (a static-pie binary has none; a dynamic one names ld.so).
if command -v readelf >/dev/null && readelf -l "$binary" | grep -q 'INTERP'; then
  echo "check-static.sh: $binary asks for a dynamic loader" >&2
  exit 1
fi
reported=$("$binary" --version)
[[ "$reported" == "nsguard $version" ]] ||
  { echo "check-static.sh: $binary says '$reported', expected nsguard $version" >&2; exit 1; }
echo "check-static.sh: $binary is static (ldd: ${said//$'\n'/ }) and says '$reported'"
