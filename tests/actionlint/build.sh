#!/usr/bin/env bash
# Builds actionlint (the GitHub Actions workflow linter) from its upstream Go module (through
# the Go module proxy) into a cache directory keyed by version, outside the repo, like
# tests/controlplane/build.sh. The last line of output is the path of the actionlint binary.
set -euo pipefail

ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-v1.7.12}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw
cache_root=${NSGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nsguard}
out="$cache_root/actionlint/$ACTIONLINT_VERSION"

log() { echo "actionlint: $*" >&2; }

if [[ ! -x "$out/actionlint" ]]; then
  start=$SECONDS
  tmp="$out.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "building actionlint $ACTIONLINT_VERSION"
  ldflags="-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
  GOBIN="$tmp" go install -trimpath -ldflags="$ldflags" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  "$tmp/actionlint" -version >&2
  rm -rf "$out"
  mv "$tmp" "$out"
  log "built in $((SECONDS - start)) s"
fi
echo "$out/actionlint"
