#!/usr/bin/env bash
# Builds the e2e cluster's binaries (kube-apiserver, kube-controller-manager, etcd, kwok) and Helm from the Go module proxy, pinned by
# the wrapper modules beside this script, into a cache outside the repository keyed by version.
# Prints "name=path" for each. Only the first run on a machine pays the build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache="${KUBE_RELAY_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-relay/e2e}"

if ! command -v go >/dev/null 2>&1; then
  echo "e2e: Go 1.26 or newer is required to build kube-apiserver, etcd, kwok and Helm from the Go module proxy: install Go (https://go.dev/doc/install) and run again" >&2
  exit 1
fi

version_of() { # module path → version pinned in a wrapper go.mod
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$here/$1/go.mod"
}

build() { # name, wrapper dir, package, version, ldflags
  local name=$1 dir=$2 pkg=$3 version=$4 ldflags=$5
  local out="$cache/$name-$version/$name"
  if [ ! -x "$out" ]; then
    echo "e2e: building $name $version (first run on this machine only)" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$here/$dir" && CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out.partial" "$pkg")
    mv "$out.partial" "$out"
  fi
  echo "$name=$out"
}

k8s=$(version_of kube-apiserver k8s.io/kubernetes)
etcd=$(version_of etcd go.etcd.io/etcd/server/v3)
kwok=$(version_of kwok sigs.k8s.io/kwok)
helm=$(version_of helm helm.sh/helm/v3)
minor=$(echo "$k8s" | cut -d. -f2)
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

build kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s" "$kube_ldflags"
build kube-controller-manager kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager "$k8s" "$kube_ldflags"
build etcd etcd go.etcd.io/etcd/server/v3 "$etcd" "-s -w"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwok" "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$kwok"
build helm helm helm.sh/helm/v3/cmd/helm "$helm" "-s -w -X helm.sh/helm/v3/internal/version.version=$helm"
