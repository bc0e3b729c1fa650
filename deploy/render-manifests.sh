#!/usr/bin/env bash
# Renders deploy/manifests/kube-relay.yaml from the chart and deploy/manifests/values.yaml (the e2e suite checks
# they stay in sync). HELM names the helm binary; test/e2e/cluster/build.sh builds a pinned one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"${HELM:-helm}" template kube-relay "$here/helm/kube-relay" --namespace kube-relay -f "$here/manifests/values.yaml" > "$here/manifests/kube-relay.yaml"
