#!/usr/bin/env bash
# Writes the krew plugin manifest of `kubectl nsguard` to stdout, from the release's checksums.
#
#   deploy/krew/generate.sh VERSION SHA256SUMS [--all]
#
# One platform per archive nsguard-vVERSION-OS-ARCH.tar.gz listed in SHA256SUMS (the file
# deploy/release/dist.sh writes), its sha256 taken from there. --all (the release workflow)
# fails unless linux and darwin, amd64 and arm64, and windows amd64 are all there. Each
# archive holds the nsguard binary (static on linux; installed as kubectl-nsguard, its help
# and errors say `kubectl nsguard`; kubectl-nsguard.exe on windows), kubectl_complete-nsguard
# (the plugin's completion; krew does not put it on the PATH, docs/cli.md says how) and its
# LICENSE.
set -euo pipefail

version=${1:?usage: generate.sh VERSION SHA256SUMS [--all]}
sums=${2:?usage: generate.sh VERSION SHA256SUMS [--all]}
all=${3:-}
version=${version#v}
base=${NSGUARD_RELEASE_URL:-https://github.com/nsguard/nsguard/releases/download}

cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: nsguard
spec:
  version: v$version
  homepage: https://github.com/nsguard/nsguard
  shortDescription: Check, audit, diagnose and tear down namespaces that would hang in Terminating
  description: |
    nsguard runs the preflight of its admission webhook from your kubeconfig:
    \`kubectl nsguard check NS\` says whether deleting NS would hang in Terminating and why,
    \`kubectl nsguard audit\` checks every namespace, \`kubectl nsguard diagnose NS\` explains a
    namespace already stuck and the safe remedies in order, and \`kubectl nsguard delete NS\`
    deletes a namespace in the order that lets it finish, never removing a finalizer.
  platforms:
YAML

found=0
for platform in linux-amd64 linux-arm64 darwin-amd64 darwin-arm64 windows-amd64; do
  archive="nsguard-v$version-$platform.tar.gz"
  sha=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$sums")
  if [[ -z "$sha" ]]; then
    if [[ "$all" == --all ]]; then
      echo "generate.sh: no $archive in $sums" >&2
      exit 1
    fi
    continue
  fi
  # Quoted below: a digest of digits (and one e) would read as a YAML number.
  [[ "$sha" =~ ^[0-9a-f]{64}$ ]] || { echo "generate.sh: bad sha256 for $archive" >&2; exit 1; }
  bin=nsguard complete=kubectl_complete-nsguard
  if [[ $platform == windows-* ]]; then bin=kubectl-nsguard.exe complete=kubectl_complete-nsguard.cmd; fi
  cat <<YAML
  - selector:
      matchLabels: {os: ${platform%-*}, arch: ${platform#*-}}
    uri: $base/v$version/$archive
    sha256: "$sha"
    bin: $bin
    files:
    - {from: $bin, to: .}
    - {from: $complete, to: .}
    - {from: LICENSE, to: .}
YAML
  found=$((found + 1))
done
[[ $found -gt 0 ]] || { echo "generate.sh: no archive of v$version in $sums" >&2; exit 1; }
