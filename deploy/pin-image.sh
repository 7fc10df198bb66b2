#!/usr/bin/env bash
# Pin the prod overlay to one pushed image, by digest: writes
# deploy/overlays/prod/release-image/kustomization.yaml (a kustomize Component with one `images:`
# entry), without which deploy/overlays/prod does not build.
#
# Usage: deploy/pin-image.sh REPOSITORY@sha256:DIGEST
#   e.g. deploy/pin-image.sh ghcr.io/acme/heart-disease-mlops@sha256:<64 hex digits>
# The release workflow runs it with the digest it pushed and signed; take a release's digest from
# its workflow summary or `docker buildx imagetools inspect REPOSITORY:VERSION`.
# Exit 2, with one line naming the rule, for anything but REPOSITORY@sha256:<64 lower-case hex>.
set -euo pipefail

usage="usage: deploy/pin-image.sh REPOSITORY@sha256:DIGEST"
[ $# -eq 1 ] || { echo "pin-image: $usage" >&2; exit 2; }
ref=$1
# A repository as the OCI distribution spec names one (lower-case path components, an optional
# registry host with a port), then a sha256 digest: never a tag, which can move.
component='[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*'
if ! [[ $ref =~ ^(([a-zA-Z0-9.-]+(:[0-9]+)?/)?$component(/$component)*)@(sha256:[a-f0-9]{64})$ ]]; then
    echo "pin-image: '$ref' is not REPOSITORY@sha256:<64 lower-case hex digits> ($usage)" >&2
    exit 2
fi
repository=${ref%@*}
digest=${ref#*@}

out="$(cd "$(dirname "$0")" && pwd)/overlays/prod/release-image"
mkdir -p "$out"
tmp=$(mktemp "$out/.kustomization.XXXXXX")
cat >"$tmp" <<YAML
# Written by deploy/pin-image.sh: the image the prod overlay runs, pinned by digest.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
images:
  - name: heart-disease-mlops
    newName: $repository
    digest: $digest
YAML
mv "$tmp" "$out/kustomization.yaml"
echo "pin-image: deploy/overlays/prod now runs $repository@$digest"
