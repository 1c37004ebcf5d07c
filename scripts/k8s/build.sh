#!/usr/bin/env bash
# Build kube-apiserver, kube-scheduler and kube-controller-manager from Debian's `kubernetes`
# SOURCE package with Debian's Go, into a cache directory outside the repository.
#
#   scripts/k8s/build.sh DEST [VERSION]
#
# DEST gets bin/{kube-apiserver,kube-scheduler,kube-controller-manager} and, last of all, a
# `.complete` marker (a half-finished build is never used). VERSION is the source package
# version to fetch (default: the newest `apt-cache showsrc kubernetes` knows). The build tree
# (~2.5 GB) lives in a temporary directory next to DEST and is removed afterwards.
#
# Needs deb-src lines and the Debian packages golang-go, dpkg-dev, make, rsync and
# golang-github-modern-go-reflect2-dev (`./dev setup` installs them: see ensure_k8s there).
# Takes about 5 minutes on 2 cores. No network except Debian's mirror.
set -euo pipefail

DEST="${1:?usage: build.sh DEST [VERSION]}"
VERSION="${2:-$(apt-cache showsrc kubernetes 2>/dev/null | awk '/^Version:/{print $2}' | sort -V | tail -1)}"
[ -n "$VERSION" ] || { echo "build.sh: no kubernetes source package (deb-src lines missing?)" >&2; exit 1; }
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
[ -f "$REFLECT2/go_above_118.go" ] || {
    echo "build.sh: $REFLECT2 (golang-github-modern-go-reflect2-dev >= 1.0.2) is missing" >&2; exit 1; }

mkdir -p "$(dirname "$DEST")"
WORK="$(mktemp -d "$(dirname "$DEST")/.build-kubernetes.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"   # apt-get source downloads as the _apt user
cd "$WORK"

echo "build.sh: fetching the kubernetes $VERSION source package" >&2
apt-get source --download-only -qq "kubernetes=$VERSION" >/dev/null
tar xzf kubernetes_*.orig.tar.gz
SRC="$(find . -maxdepth 1 -type d -name 'kubernetes-*' | head -1)"
[ -n "$SRC" ] || { echo "build.sh: unexpected source tarball layout" >&2; ls >&2; exit 1; }
cd "$SRC"
UPSTREAM="v${SRC#./kubernetes-}"

# The vendored modern-go/reflect2 v1.0.1 breaks under Go >= 1.18 (a nil-pointer panic while
# decoding every JSON object with a map: each POST to the apiserver fails). Debian's v1.0.2
# has the fix; swap it in.
R=vendor/github.com/modern-go/reflect2
if [ ! -f "$R/go_above_118.go" ]; then
    mv "$R" "$R.orig"
    mkdir -p "$R"
    cp "$REFLECT2"/*.go "$REFLECT2"/*.s "$R/"
    rm -f "$R"/*_test.go
    cp "$R.orig/LICENSE" "$R/" 2>/dev/null || true
    rm -rf "$R.orig"
fi

echo "build.sh: building $UPSTREAM (about 5 minutes on 2 cores)" >&2
started=$(date +%s)
# The upstream Makefile (a plain `go build` lacks the generated zz_generated.openapi.go).
env HOME="$WORK/home" GOCACHE="$WORK/gocache" GOFLAGS= KUBE_GIT_VERSION="$UPSTREAM" \
    KUBE_GIT_TREE_STATE=clean \
    make WHAT="cmd/kube-apiserver cmd/kube-scheduler cmd/kube-controller-manager" >"$WORK/build.log" 2>&1 || {
    tail -40 "$WORK/build.log" >&2; exit 1; }

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp/bin"
cp _output/bin/kube-apiserver _output/bin/kube-scheduler _output/bin/kube-controller-manager "$DEST.tmp/bin/"
printf 'package=kubernetes %s\nupstream=%s\ngo=%s\nbuilt=%s\nseconds=%s\n' "$VERSION" "$UPSTREAM" \
    "$(go version | cut -d' ' -f3)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(( $(date +%s) - started ))" \
    >"$DEST.tmp/.complete"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "build.sh: done in $(( $(date +%s) - started )) s: $DEST/bin" >&2
