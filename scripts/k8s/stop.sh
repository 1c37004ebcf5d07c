#!/usr/bin/env bash
# Stop what start.sh started, by pid file only (SIGTERM, then SIGKILL after 5 s).
#
#   scripts/k8s/stop.sh BASE            everything; etcd's data is removed
#   K8S_ONLY=apiserver scripts/k8s/stop.sh BASE    only kube-apiserver (an API outage)
BASE="${1:?usage: stop.sh BASE}"
names=(kube-controller-manager kube-scheduler kube-apiserver etcd)
[ "${K8S_ONLY:-}" = apiserver ] && names=(kube-apiserver)
pids=()
for name in "${names[@]}"; do
    f="$BASE/run/$name.pid"
    [ -s "$f" ] || continue
    pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    rm -f "$f"
done
for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
done
for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
[ "${K8S_ONLY:-}" = apiserver ] || [ "${K8S_KEEP_DATA:-0}" = 1 ] || rm -rf "$BASE/etcd"
exit 0
