#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker and rule unit tester) from its upstream Go module
# (through the Go module proxy) into a cache directory keyed by version, outside the repo,
# like tests/controlplane/build.sh. The last line of output is the path of the promtool binary.
#
# The Go module github.com/prometheus/prometheus tags Prometheus 3.Y.Z as v0.3YY.Z.
set -euo pipefail

PROMTOOL_VERSION=${PROMTOOL_VERSION:-v0.316.0}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw
cache_root=${NSGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nsguard}
out="$cache_root/promtool/$PROMTOOL_VERSION"

log() { echo "promtool: $*" >&2; }

if [[ ! -x "$out/promtool" ]]; then
  start=$SECONDS
  tmp="$out.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "building promtool $PROMTOOL_VERSION (cold: a few minutes)"
  GOBIN="$tmp" go install -trimpath -ldflags="-s -w" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
  "$tmp/promtool" --help >/dev/null
  rm -rf "$out"
  mv "$tmp" "$out"
  log "built in $((SECONDS - start)) s"
fi
echo "$out/promtool"
