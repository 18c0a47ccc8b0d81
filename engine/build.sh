#!/usr/bin/env bash
# Builds the deploy toolchain from Go modules alone (the module proxy is the only source it needs):
#   pulumi (CLI), pulumi-language-python (+ its exec shim), pulumi-resource-pulumi-python (dynamic providers),
#   pulumi-resource-kubernetes, kube-apiserver, kube-controller-manager, etcd.
# Versions come from headwater/versions.py. The binaries land in a cache outside the clone, keyed on every input
# (versions, go.mod/go.sum, sources), so a second `make test` on the same machine reuses them:
#   ${HEADWATER_TOOLCHAIN_CACHE:-~/.cache/headwater}/engine/<key>/bin
# Go's module and build caches sit beside it and are shared between keys, so a changed input rebuilds in seconds.
# Usage: engine/build.sh [--print-bin] [kube|all]
#   kube: the control plane only (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok)
#   all (default): kube plus the Pulumi CLI, its Python language host and the Kubernetes provider
#   --print-bin prints the bin folder (building first what is missing); progress goes to stderr.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CACHE=${HEADWATER_TOOLCHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/headwater}
export PATH=/usr/local/go/bin:$PATH

ver() { python3 -c "import runpy,sys; print(runpy.run_path('$ROOT/headwater/versions.py')[sys.argv[1]])" "$1"; }
PULUMI_VERSION=v$(ver PULUMI_ENGINE_VERSION)
LANGHOST_VERSION=v$(ver PULUMI_LANGUAGE_PYTHON_SOURCE_VERSION)
K8S_PROVIDER_VERSION=$(ver PULUMI_KUBERNETES_VERSION)
K8S_PROVIDER_MODULE=$(ver PULUMI_KUBERNETES_PROVIDER_MODULE_VERSION)
KUBE_VERSION=v$(ver KUBE_CONTROL_PLANE_VERSION)
ETCD_VERSION=v$(ver ETCD_VERSION)
KWOK_VERSION=v$(ver KWOK_VERSION)

key=$( { go version; echo "$PULUMI_VERSION $LANGHOST_VERSION $K8S_PROVIDER_VERSION $K8S_PROVIDER_MODULE $KUBE_VERSION $ETCD_VERSION $KWOK_VERSION";
         cd "$HERE" && find pulumicli k8sprovider kubecp -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' -o -name '*.py' \) \
           ! -name '*-embed.json' | LC_ALL=C sort | xargs sha256sum; cat "$HERE/build.sh"; } | sha256sum | cut -c1-16)
OUT=$CACHE/engine/$key
BIN=$OUT/bin

print=0; [ "${1:-}" = "--print-bin" ] && { print=1; shift; }
what=${1:-all}
case "$what" in kube|all) ;; *) echo "usage: $0 [--print-bin] [kube|all]" >&2; exit 2 ;; esac
DONE=$OUT/.complete-$what
finish() { [ "$print" = 1 ] && echo "$BIN"; exit 0; }
if [ -f "$DONE" ]; then [ "$print" = 1 ] || echo "engine toolchain ($what): cached in $BIN" >&2; finish; fi

export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOPATH=$CACHE/go/path GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$BIN" "$GOMODCACHE" "$GOCACHE"
# one build at a time per key (two `make test` runs in parallel wait for each other)
exec 9>"$OUT.lock"; flock 9
[ -f "$DONE" ] && finish

step=0; started=$(date +%s)
if [ "$what" = kube ]; then total=6; else total=9; fi
t() {
  step=$((step + 1)); local s; s=$(date +%s)
  echo "engine toolchain [$step/$total] $1 ..." >&2; shift
  "$@"
  echo "engine toolchain [$step/$total] done in $(( $(date +%s) - s ))s (total $(( $(date +%s) - started ))s)" >&2
}
echo "engine toolchain ($what): building into $OUT (cold: about 30 min on 2 cores; warm Go caches: under a minute)" >&2

# Work on a copy: the sources stay untouched and read-only checkouts build too.
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
cp -r "$HERE/pulumicli" "$HERE/k8sprovider" "$HERE/kubecp" "$WORK/"
chmod -R u+w "$WORK"

download() {
  (cd "$WORK/pulumicli" && go list -deps github.com/pulumi/pulumi/pkg/v3/cmd/pulumi ./langpython >/dev/null)
  (cd "$WORK/k8sprovider" && go mod download)
  (cd "$WORK/kubecp" && go list -deps k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler ./cmd/etcd >/dev/null)
}

build_pulumi() {
  cd "$WORK/pulumicli"
  go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
    -o "$BIN/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
}

build_langhost() {
  cd "$WORK/pulumicli"
  # versioned as the tag its source comes from, not the pkg/sdk it compiles against
  go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$LANGHOST_VERSION" \
    -o "$BIN/pulumi-language-python" ./langpython
  local sdk; sdk=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
  # the host runs programs through this shim next to its own binary; dynamic providers run through the other,
  # which the CLI looks up on PATH
  install -m 0755 "$sdk/python/cmd/pulumi-language-python-exec" "$BIN/"
  install -m 0755 "$sdk/python/dist/pulumi-resource-pulumi-python" "$BIN/"
}

build_provider() {
  cd "$WORK/k8sprovider"
  local src; src=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)/cmd/pulumi-resource-kubernetes
  python3 gen-embed.py "$src" "$K8S_PROVIDER_VERSION"
  go build -trimpath -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION" \
    -o "$BIN/pulumi-resource-kubernetes" .
}

kube_ldflags() {
  local ld="-s -w" p minor
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld="$ld -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  echo "$ld"
}
build_apiserver() { cd "$WORK/kubecp" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver; }
build_kcm() { cd "$WORK/kubecp" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$BIN/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager; }
build_scheduler() { cd "$WORK/kubecp" && go build -trimpath -ldflags "$(kube_ldflags)" -o "$BIN/kube-scheduler" k8s.io/kubernetes/cmd/kube-scheduler; }
# kwok plays the kubelet of simulated nodes (pods scheduled there become Running/Ready); its own module, as released
# kwok plays nothing without stages: its released "fast" set (nodes become Ready and keep a heartbeat, pods
# become Running/Ready, complete, and go away when deleted), copied from the same module into one config file.
build_kwok() {
  cd "$WORK" && GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  local stages; stages=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/kustomize/stage
  local f out="$BIN/kwok-stages.yaml"
  : > "$out"
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    { echo "---"; echo "# sigs.k8s.io/kwok@$KWOK_VERSION kustomize/stage/$f"; cat "$stages/$f"; } >> "$out"
  done
}
build_etcd() { cd "$WORK/kubecp" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" ./cmd/etcd; }

if [ -f "$OUT/.complete-kube" ]; then
  step=6
else
  t "download Go modules" download
  t "etcd $ETCD_VERSION" build_etcd
  t "kube-apiserver $KUBE_VERSION" build_apiserver
  t "kube-controller-manager $KUBE_VERSION (garbage collector, namespace controller)" build_kcm
  t "kube-scheduler $KUBE_VERSION" build_scheduler
  t "kwok $KWOK_VERSION" build_kwok
  "$BIN/kube-apiserver" --version >/dev/null
  [ -s "$BIN/kwok-stages.yaml" ]
  touch "$OUT/.complete-kube"
fi
if [ "$what" = all ]; then
  t "pulumi CLI $PULUMI_VERSION" build_pulumi
  t "pulumi-language-python ($LANGHOST_VERSION source)" build_langhost
  t "pulumi-resource-kubernetes $K8S_PROVIDER_VERSION (about 4.5 GB peak memory)" build_provider
  "$BIN/pulumi" version >/dev/null
  touch "$OUT/.complete-all"
fi
echo "engine toolchain ($what): built in $(( $(date +%s) - started ))s into $BIN" >&2
finish
