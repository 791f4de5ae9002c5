#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl and etcd from upstream Go modules
# (through the Go module proxy) into a cache directory keyed by version, outside the repo.
# The last line of output is that directory.
#
#   tests/controlplane/build.sh          build what is missing, print the directory
#   tests/controlplane/build.sh --regen  rewrite the wrapper go.mod/go.sum files from the
#                                        upstream go.mod of $K8S_VERSION / $ETCD_VERSION
#
# Why wrapper modules: k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces
# them with ./staging paths, so `go install k8s.io/kubernetes/cmd/...@vX` is refused. A main
# module of our own requires k8s.io/kubernetes and replaces each staging module with its
# published v0.Y.Z, the way other projects build single Kubernetes binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-modcacherw
cache_root=${NSGUARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nsguard}
out="$cache_root/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
bins=(kube-apiserver kube-controller-manager kubectl etcd)

log() { echo "controlplane: $*" >&2; }

regen() {
  local staging="v0.${K8S_VERSION#v1.}"
  log "regenerating wrapper modules for kubernetes $K8S_VERSION (staging $staging), etcd $ETCD_VERSION"
  (
    cd "$here/kubernetes"
    rm -f go.mod go.sum
    go mod init nsguard.invalid/controlplane/kubernetes >/dev/null 2>&1
    local upstream
    upstream=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    # Copy k/k's go and godebug lines (they only apply in the main module) and replace every
    # staging module that k/k requires at v0.0.0 with its published version.
    go mod edit -json "$upstream" | python3 -c '
import json, sys
m = json.load(sys.stdin)
staging = sys.argv[1]
print("-go=" + m["Go"])
for g in m.get("Godebug") or []:
    print("-godebug=%s=%s" % (g["Key"], g["Value"]))
for r in m["Require"]:
    if r["Path"].startswith("k8s.io/") and r["Version"] == "v0.0.0":
        print("-replace=%s=%s@%s" % (r["Path"], r["Path"], staging))
' "$staging" | xargs go mod edit
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
  )
  (
    cd "$here/etcd"
    rm -f go.mod go.sum
    go mod init nsguard.invalid/controlplane/etcd >/dev/null 2>&1
    go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  )
}

build() {
  local tmp="$out.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  local minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  local ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kube-apiserver, kube-controller-manager, kubectl $K8S_VERSION (cold: tens of minutes)"
  (cd "$here/kubernetes" && go build -trimpath -tags=selinux,notest -ldflags="$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl)
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && go build -trimpath -ldflags="-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  "$tmp/kube-apiserver" --version >&2
  "$tmp/etcd" --version | head -1 >&2
  rm -rf "$out"
  mv "$tmp" "$out"
}

if [[ ${1:-} == --regen ]]; then
  regen
fi

missing=0
for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || missing=1; done
if ((missing)); then
  start=$SECONDS
  build
  log "built in $((SECONDS - start)) s"
fi
echo "$out"
