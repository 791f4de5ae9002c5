#!/usr/bin/env bash
# Builds helm from its upstream Go module (through the Go module proxy) into a cache
# directory keyed by version, outside the repo, like tests/controlplane/build.sh.
# The last line of output is the path of the helm binary.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw
cache_root=${NSGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nsguard}
out="$cache_root/helm/$HELM_VERSION"

log() { echo "helm: $*" >&2; }

if [[ ! -x "$out/helm" ]]; then
  start=$SECONDS
  tmp="$out.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  log "building helm $HELM_VERSION (cold: a few minutes)"
  # `helm version` reads its version from these variables; go install leaves them empty.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  GOBIN="$tmp" go install -trimpath -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  "$tmp/helm" version --short >&2
  rm -rf "$out"
  mv "$tmp" "$out"
  log "built in $((SECONDS - start)) s"
fi
echo "$out/helm"
