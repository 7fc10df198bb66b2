#!/usr/bin/env bash
# Pin the prod overlay to one release's two pushed images, by digest: writes
# deploy/overlays/prod/release-image/kustomization.yaml (a kustomize Component with one `images:`
# entry per image), without which deploy/overlays/prod does not build.
#
# Usage: deploy/pin-image.sh PREDICTOR@sha256:DIGEST EXPLAINER@sha256:DIGEST
#   e.g. deploy/pin-image.sh ghcr.io/acme/heart-disease-mlops@sha256:<64 hex> \
#                            ghcr.io/acme/heart-disease-mlops-explainer@sha256:<64 hex>
# The predictor replaces k8s/'s heart-disease-mlops, the explainer heart-disease-mlops-explainer.
# The release workflow runs it with the digests it pushed and signed; take a release's digests from
# its workflow summary or `docker buildx imagetools inspect REPOSITORY:VERSION`.
# Exit 2, with one line naming the rule, for anything but two REPOSITORY@sha256:<64 lower-case hex>,
# the explainer's repository named *-explainer and the predictor's not (so the two cannot be swapped).
set -euo pipefail

usage="usage: deploy/pin-image.sh PREDICTOR@sha256:DIGEST EXPLAINER@sha256:DIGEST"
[ $# -eq 2 ] || { echo "pin-image: $usage" >&2; exit 2; }
# A repository as the OCI distribution spec names one (lower-case path components, an optional
# registry host with a port), then a sha256 digest: never a tag, which can move.
component='[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*'
for ref in "$@"; do
    if ! [[ $ref =~ ^(([a-zA-Z0-9.-]+(:[0-9]+)?/)?$component(/$component)*)@(sha256:[a-f0-9]{64})$ ]]; then
        echo "pin-image: '$ref' is not REPOSITORY@sha256:<64 lower-case hex digits> ($usage)" >&2
        exit 2
    fi
done
predictor=${1%@*}
explainer=${2%@*}
if [[ $predictor == *-explainer || $explainer != *-explainer ]]; then
    echo "pin-image: the first image is the predictor, the second the explainer (its repository" \
        "ends in -explainer): got '$predictor' then '$explainer' ($usage)" >&2
    exit 2
fi

out="$(cd "$(dirname "$0")" && pwd)/overlays/prod/release-image"
mkdir -p "$out"
tmp=$(mktemp "$out/.kustomization.XXXXXX")
cat >"$tmp" <<YAML
# Written by deploy/pin-image.sh: the images the prod overlay runs, pinned by digest.
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
images:
  - name: heart-disease-mlops
    newName: $predictor
    digest: ${1#*@}
  - name: heart-disease-mlops-explainer
    newName: $explainer
    digest: ${2#*@}
YAML
mv "$tmp" "$out/kustomization.yaml"
echo "pin-image: deploy/overlays/prod now runs $1 and $2"
