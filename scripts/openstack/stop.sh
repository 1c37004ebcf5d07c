#!/usr/bin/env bash
# Stop what start.sh started, by pid file only (and the children of those processes; SIGTERM,
# then SIGKILL after 10 s): the OpenStack services (Nova, Cinder, Glance, Placement, Keystone),
# RabbitMQ (and the epmd it started on its private port) and PostgreSQL.
#
#   scripts/openstack/stop.sh BASE
#   OS_ONLY=nova-api scripts/openstack/stop.sh BASE    only nova-api (an API outage)
BASE="${1:?usage: stop.sh BASE}"
RUN="$BASE/run"
names=(nova-api nova-compute nova-scheduler nova-conductor cinder-volume cinder-scheduler cinder-api glance placement neutron-stub keystone bootstrap rabbitmq)
[ "${OS_ONLY:-}" = nova-api ] && names=(nova-api)
# alive PID: running, not a zombie waiting for init to reap it
alive() { local st; st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)"; [ -n "$st" ] && [ "$st" != Z ]; }
pids=()
for name in "${names[@]}"; do
    f="$RUN/$name.pid"
    [ -s "$f" ] || continue
    pid="$(cat "$f")"
    # its children too, found before it stops: cinder-volume runs its backend in a child
    # process, which a killed parent leaves running (re-parented to init)
    kids=($(pgrep -P "$pid" 2>/dev/null || true))
    # SIGTERM: uWSGI runs with --die-on-term, the Erlang VM and the oslo services stop on it
    kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    for kid in "${kids[@]}"; do kill -TERM "$kid" 2>/dev/null && pids+=("$kid"); done
    rm -f "$f"
done
for _ in $(seq 1 100); do
    alive=0
    for p in "${pids[@]}"; do alive "$p" && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
done
for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
[ "${OS_ONLY:-}" = nova-api ] && exit 0

if [ -f "$BASE/rabbit/env" ]; then   # epmd outlives the Erlang VM that started it
    port="$(sed -n 's/^ERL_EPMD_PORT=//p' "$BASE/rabbit/env")"
    [ -n "$port" ] && ERL_EPMD_PORT="$port" epmd -kill >/dev/null 2>&1 || true
fi
if [ -d "$BASE/pg/data" ]; then
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$BASE/pg/data" -m fast -w stop >/dev/null 2>&1
    else
        "$PGBIN/pg_ctl" -D "$BASE/pg/data" -m fast -w stop >/dev/null 2>&1
    fi
fi
exit 0
