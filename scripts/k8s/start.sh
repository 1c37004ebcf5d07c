#!/usr/bin/env bash
# Start a Kubernetes control plane on 127.0.0.1 for tests: etcd (Debian's etcd-server) and
# kube-apiserver, then kube-scheduler and kube-controller-manager (built by build.sh).
# There is no kubelet and no container runtime: tests/fixtures/kubelet.py stands in for one.
#
#   scripts/k8s/start.sh BASE
#
# Environment (all optional):
#   K8S_BIN          directory with the three binaries (default: the newest complete build
#                    under $EB_CACHE_DIR or /var/cache/jupyter-execution-broker)
#   ETCD_PORT, ETCD_PEER_PORT, API_PORT    loopback ports (default 12379, 12380, 16443)
#   K8S_TOKEN        static bearer token of the admin user (group system:masters)
#   K8S_SCHEDULER=0, K8S_CONTROLLER_MANAGER=0    do not start those
#   K8S_ONLY=apiserver   (re)start only kube-apiserver against the running etcd
#
# Writes BASE/kubeconfig, logs to BASE/log/, pid files to BASE/run/ (stop.sh kills by them).
# Ready (apiserver /readyz 200, namespace default present) in about 4 s.
set -euo pipefail
BASE="${1:?usage: start.sh BASE}"
mkdir -p "$BASE"/{etcd,pki,log,run}
BASE="$(cd "$BASE" && pwd)"

find_bin() {
    local root
    for root in ${EB_CACHE_DIR:-} /var/cache/jupyter-execution-broker "${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-execution-broker"; do
        { ls -d "$root"/kubernetes-*/.complete 2>/dev/null || true; } | sort -V | tail -1 | xargs -r dirname
    done | head -1
}
BIN="${K8S_BIN:-}"
if [ -z "$BIN" ]; then BIN="$(find_bin)/bin"; fi
[ -x "$BIN/kube-apiserver" ] || {
    echo "start.sh: no kube-apiserver in '$BIN': run ./dev setup (it builds the binaries once)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "start.sh: etcd is not installed (Debian etcd-server; ./dev setup)" >&2; exit 1; }

ETCD_PORT="${ETCD_PORT:-12379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-12380}"
API_PORT="${API_PORT:-16443}"
TOKEN="${K8S_TOKEN:-eb-test-admin-token}"

start_apiserver() {
    "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
        --insecure-port 0 \
        --cert-dir "$BASE/pki" \
        --token-auth-file "$BASE/pki/tokens.csv" \
        --authorization-mode RBAC \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$BASE/pki/sa.key" \
        --service-account-signing-key-file "$BASE/pki/sa.key" \
        --service-cluster-ip-range 10.96.0.0/16 \
        --enable-admission-plugins NamespaceLifecycle,LimitRanger,ResourceQuota \
        --disable-admission-plugins ServiceAccount \
        --allow-privileged=true \
        >>"$BASE/log/kube-apiserver.log" 2>&1 </dev/null &
    echo $! >"$BASE/run/kube-apiserver.pid"
    local code=""
    for _ in $(seq 1 600); do
        code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
            "https://127.0.0.1:$API_PORT/readyz" || true)
        [ "$code" = 200 ] && break
        kill -0 "$(cat "$BASE/run/kube-apiserver.pid")" 2>/dev/null || {
            echo "start.sh: kube-apiserver exited:" >&2; tail -20 "$BASE/log/kube-apiserver.log" >&2; exit 1; }
        sleep 0.1
    done
    [ "$code" = 200 ] || { echo "start.sh: kube-apiserver not ready after 60 s" >&2; exit 1; }
}

if [ "${K8S_ONLY:-}" = apiserver ]; then
    start_apiserver
    exit 0
fi

[ -s "$BASE/pki/sa.key" ] || openssl genrsa -out "$BASE/pki/sa.key" 2048 2>/dev/null
echo "$TOKEN,admin,admin,system:masters" >"$BASE/pki/tokens.csv"

etcd --name eb-test --data-dir "$BASE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "eb-test=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 268435456 \
    >>"$BASE/log/etcd.log" 2>&1 </dev/null &
echo $! >"$BASE/run/etcd.pid"

start_apiserver

cat >"$BASE/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: eb-test
  cluster: {server: "https://127.0.0.1:$API_PORT", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "$TOKEN"}
contexts:
- name: eb-test
  context: {cluster: eb-test, user: admin, namespace: default}
current-context: eb-test
KC

for _ in $(seq 1 100); do   # the apiserver creates the namespace "default" itself
    curl -sfk -o /dev/null -H "Authorization: Bearer $TOKEN" \
        "https://127.0.0.1:$API_PORT/api/v1/namespaces/default" && break
    sleep 0.1
done

if [ "${K8S_SCHEDULER:-1}" = 1 ]; then
    "$BIN/kube-scheduler" --kubeconfig "$BASE/kubeconfig" --leader-elect=false --port=0 --secure-port=0 \
        >>"$BASE/log/kube-scheduler.log" 2>&1 </dev/null &
    echo $! >"$BASE/run/kube-scheduler.pid"
fi
if [ "${K8S_CONTROLLER_MANAGER:-1}" = 1 ]; then
    # No token controller (no service account keys in pods) and no node lifecycle controller:
    # the stand-in kubelet sends no heartbeats, and nodes must stay Ready through the
    # API-outage tests.
    "$BIN/kube-controller-manager" --kubeconfig "$BASE/kubeconfig" --leader-elect=false \
        --port=0 --secure-port=0 --use-service-account-credentials=false \
        --controllers='*,-serviceaccount-token,-nodelifecycle' \
        >>"$BASE/log/kube-controller-manager.log" 2>&1 </dev/null &
    echo $! >"$BASE/run/kube-controller-manager.pid"
fi
echo "KUBECONFIG=$BASE/kubeconfig"
