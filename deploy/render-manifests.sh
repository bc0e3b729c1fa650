#!/usr/bin/env bash
# Renders deploy/manifests/kube-relay.yaml from the chart and deploy/manifests/values.yaml (the e2e suite checks
# they stay in sync). HELM names the helm binary; test/e2e/cluster/build.sh builds a pinned one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
helm=${HELM:-helm}
command -v "$helm" >/dev/null || { echo "render-manifests.sh: no helm binary \"$helm\": set HELM to one (test/e2e/cluster/build.sh builds a pinned one into ~/.cache/kube-relay/e2e)" >&2; exit 1; }
# Rendered aside first, so a failure leaves the committed file as it was.
"$helm" template kube-relay "$here/helm/kube-relay" --namespace kube-relay -f "$here/manifests/values.yaml" > "$here/manifests/kube-relay.yaml.new"
mv "$here/manifests/kube-relay.yaml.new" "$here/manifests/kube-relay.yaml"
