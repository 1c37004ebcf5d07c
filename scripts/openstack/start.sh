#!/usr/bin/env bash
# Start a small real OpenStack on 127.0.0.1 for tests: Keystone, Placement, Glance, Cinder
# (api, scheduler, volume with eb_cinder_file_driver.py: volumes are sparse files under
# BASE/cinder/volumes) and Nova (api, conductor, scheduler, compute with the *fake* virt
# driver, attaching volumes through Cinder) from PyPI, served by uWSGI,
# on a throwaway PostgreSQL cluster and RabbitMQ (Debian's), plus neutron_stub.py (Nova asks
# Neutron about ports and security groups even for servers booted with networks "none").
#
#   scripts/openstack/start.sh BASE
#
# Environment (all optional):
#   OS_VENV        the services' virtualenv (default: the one ./dev setup installed for this
#                  requirements.txt under $EB_CACHE_DIR or /var/cache/jupyter-execution-broker)
#   KS_PORT PL_PORT GLANCE_PORT CINDER_PORT NOVA_PORT NEUTRON_PORT PG_PORT RMQ_PORT EPMD_PORT
#                  loopback ports (defaults 15000 18778 19292 18776 18774 19696 15432 15672 14369)
#   OS_ADMIN_PASSWORD     the admin user's password (default adminpw)
#   CINDER_CAPACITY_GB    the capacity the file volume driver reports (default 100)
#   NOVA_FAKE_DRIVER      Nova's compute driver (default fake.MediumFakeDriverWithNestedCustomResources:
#                         10 vCPU, 8 GiB and a nested provider with 10 CUSTOM_MAGIC units)
#   OS_ONLY=nova-api      (re)start only nova-api on the running stack (an API outage test)
#
# Always starts from a fresh state (nova-compute refuses to start on old state). Writes
# BASE/clouds.yaml (cloud "eb-admin"), logs to BASE/log/, pid files to BASE/run/ (stop.sh
# stops by them). Flavors, images and the service catalogue are created by bootstrap.py, one
# openstacksdk process. Ready in about a minute on 2 cores; see docs/testing.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BASE="${1:?usage: start.sh BASE}"
mkdir -p "$BASE"/{log,run,etc}
BASE="$(cd "$BASE" && pwd)"
LOG="$BASE/log"
RUN="$BASE/run"
ETC="$BASE/etc"

# the virtualenv ./dev setup installed for this requirements.txt (<cache>/openstack-<series>-
# <digest>, see ensure_openstack in ./dev)
find_venv() {
    local root digest
    digest="$(sha256sum "$HERE/requirements.txt" | cut -c1-12)"
    for root in ${EB_CACHE_DIR:-} /var/cache/jupyter-execution-broker "${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-execution-broker"; do
        { ls -d "$root"/openstack-*-"$digest"/.complete 2>/dev/null || true; } | head -1 | xargs -r dirname
    done | head -1
}
VENV="${OS_VENV:-}"
[ -n "$VENV" ] || VENV="$(find_venv)/venv"
[ -x "$VENV/bin/nova-api-wsgi" ] || [ -x "$VENV/bin/nova-manage" ] || {
    echo "start.sh: no OpenStack services in '$VENV': run ./dev setup (it installs them once)" >&2; exit 1; }
PY="$VENV/bin/python"

KS_PORT="${KS_PORT:-15000}"; PL_PORT="${PL_PORT:-18778}"; GLANCE_PORT="${GLANCE_PORT:-19292}"
CINDER_PORT="${CINDER_PORT:-18776}"; NOVA_PORT="${NOVA_PORT:-18774}"; NEUTRON_PORT="${NEUTRON_PORT:-19696}"
PG_PORT="${PG_PORT:-15432}"; RMQ_PORT="${RMQ_PORT:-15672}"; EPMD_PORT="${EPMD_PORT:-14369}"
ADMIN_PW="${OS_ADMIN_PASSWORD:-adminpw}"
FAKE_DRIVER="${NOVA_FAKE_DRIVER:-fake.MediumFakeDriverWithNestedCustomResources}"
KS_URL="http://127.0.0.1:$KS_PORT/v3"
DB="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT"
TRANSPORT="rabbit://guest:guest@127.0.0.1:$RMQ_PORT/"

fail() {
    echo "start.sh: $1" >&2
    local f
    for f in "${@:2}"; do [ -f "$f" ] && { echo "--- $f ---" >&2; tail -25 "$f" >&2; }; done
    exit 1
}

# wait_http URL SECONDS NAME PIDFILE: until URL answers (any HTTP status), or the process died.
wait_http() {
    local url="$1" seconds="$2" name="$3" pidfile="${4:-}" i
    for i in $(seq 1 $((seconds * 5))); do
        curl -s -o /dev/null --max-time 2 "$url" && return 0
        if [ -n "$pidfile" ] && ! kill -0 "$(cat "$pidfile" 2>/dev/null || echo 0)" 2>/dev/null; then
            fail "$name exited" "$LOG/$name.log" "$LOG/$name-uwsgi.log"
        fi
        sleep 0.2
    done
    fail "$name did not answer at $url within $seconds s" "$LOG/$name.log" "$LOG/$name-uwsgi.log"
}

# uwsgi_app NAME PORT MODULE [ENV=VALUE ...] [-- UWSGI-OPTION ...]: one uWSGI master + 1
# worker with 4 threads. "Connection: close": keystoneauth's keep-alive connections to uWSGI's
# --http-socket get reset on POSTs otherwise. --http-chunked-input: Glance's image uploads.
uwsgi_app() {
    local name="$1" port="$2" module="$3" envs=()
    shift 3
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    env "${envs[@]}" "$VENV/bin/uwsgi" --http-socket "127.0.0.1:$port" --module "$module" \
        --master --processes 1 --threads 4 --die-on-term --need-app --lazy-apps \
        --add-header "Connection: close" --http-chunked-input --buffer-size 65535 \
        --home "$VENV" --pidfile "$RUN/$name.pid" "$@" >"$LOG/$name-uwsgi.log" 2>&1 </dev/null &
}

# daemon NAME COMMAND...: a background process with a pid file.
daemon() {
    local name="$1"
    shift
    "$@" >"$LOG/$name.out" 2>&1 </dev/null &
    echo $! >"$RUN/$name.pid"
}

start_nova_api() {
    uwsgi_app nova-api "$NOVA_PORT" nova.wsgi.osapi_compute:application OS_NOVA_CONFIG_DIR="$ETC/nova" \
        OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf;nova-api.conf"
    wait_http "http://127.0.0.1:$NOVA_PORT/" 120 nova-api "$RUN/nova-api.pid"
}

if [ "${OS_ONLY:-}" = nova-api ]; then
    start_nova_api
    exit 0
fi

# ---- PostgreSQL: a throwaway cluster for every service's database (SQLite makes Nova's
#      several processes fail with "database is locked"). initdb refuses to run as root.
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$PGBIN/initdb" ] || fail "PostgreSQL is not installed (Debian postgresql; ./dev setup)"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
rm -rf "$BASE/pg"
mkdir -p "$BASE/pg"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$BASE/pg"
    d="$BASE"   # the postgres user must be able to reach its directory
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
fi
as_pg "$PGBIN/initdb" -D "$BASE/pg/data" -A trust -U postgres --no-sync >"$LOG/initdb.log" 2>&1 ||
    fail "initdb failed" "$LOG/initdb.log"
as_pg "$PGBIN/pg_ctl" -D "$BASE/pg/data" -l "$BASE/pg/pg.log" -w start \
    -o "-p $PG_PORT -k $BASE/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >/dev/null || fail "PostgreSQL did not start" "$BASE/pg/pg.log"
printf 'CREATE DATABASE %s;\n' keystone placement glance cinder nova_api nova_cell0 nova_cell1 |
    psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres >/dev/null

# ---- RabbitMQ (Debian's), run directly (not through the wrapper that switches to the
#      rabbitmq user): private HOME (Erlang cookie), data, logs and epmd port; guest/guest is
#      allowed from loopback.
R="$BASE/rabbit"
mkdir -p "$R"
echo "[]." >"$R/enabled_plugins"
printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$RMQ_PORT" >"$R/rabbitmq.conf"
rabbit_env=(HOME="$R" ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_NODENAME="eb$RMQ_PORT@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$RMQ_PORT" RABBITMQ_DIST_PORT="$((RMQ_PORT + 10000))"
    RABBITMQ_MNESIA_BASE="$R/mnesia" RABBITMQ_LOG_BASE="$R/log" RABBITMQ_PID_FILE="$R/rabbit.pid"
    RABBITMQ_ENABLED_PLUGINS_FILE="$R/enabled_plugins" RABBITMQ_CONFIG_FILE="$R/rabbitmq"
    RABBITMQ_CONF_ENV_FILE="$R/none.conf" RUNNING_UNDER_SYSTEMD=true)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || fail "RabbitMQ is not installed (Debian rabbitmq-server; ./dev setup)"
printf '%s\n' "${rabbit_env[@]}" >"$R/env"
daemon rabbitmq env "${rabbit_env[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server

# ---- configuration files
mkdir -p "$ETC"/{keystone,placement,glance,cinder,nova} "$BASE/keystone"/{fernet,credential} \
    "$BASE/glance"/{images,staging,tasks} "$BASE/cinder"/{volumes,lock,conversion} "$BASE/nova"/{instances,lock}
chmod 700 "$BASE/keystone/fernet" "$BASE/keystone/credential"
AUTH="auth_type = password
auth_url = $KS_URL
www_authenticate_uri = $KS_URL
username = admin
password = $ADMIN_PW
project_name = admin
user_domain_name = Default
project_domain_name = Default
region_name = RegionOne"

cat >"$ETC/keystone/keystone.conf" <<CONF
[DEFAULT]
log_file = $LOG/keystone.log
[database]
connection = $DB/keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $BASE/keystone/fernet
[fernet_receipts]
key_repository = $BASE/keystone/fernet
[credential]
key_repository = $BASE/keystone/credential
CONF
cat >"$ETC/placement/placement.conf" <<CONF
[DEFAULT]
log_file = $LOG/placement.log
[placement_database]
connection = $DB/placement
[api]
auth_strategy = keystone
[keystone_authtoken]
$AUTH
service_token_roles_required = false
CONF
cat >"$ETC/glance/glance-api.conf" <<CONF
[DEFAULT]
log_file = $LOG/glance.log
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $BASE/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $BASE/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $BASE/glance/tasks
[database]
connection = $DB/glance
[keystone_authtoken]
$AUTH
[paste_deploy]
flavor = keystone
config_file = $VENV/etc/glance/glance-api-paste.ini
CONF
# Cinder: one backend, "file" (eb_cinder_file_driver.py, imported from $HERE). The scheduler
# waits for the volume service's first capabilities, not the default 60 s.
cat >"$ETC/cinder/cinder.conf" <<CONF
[DEFAULT]
transport_url = $TRANSPORT
auth_strategy = keystone
host = eb-volume-1
my_ip = 127.0.0.1
state_path = $BASE/cinder
image_conversion_dir = $BASE/cinder/conversion
api_paste_config = $VENV/etc/cinder/api-paste.ini
enabled_backends = file
default_volume_type = __DEFAULT__
scheduler_driver_init_wait_time = 5
periodic_fuzzy_delay = 0
graceful_shutdown_timeout = 2
[database]
connection = $DB/cinder
[keystone_authtoken]
$AUTH
# Nova detaches a server's volumes with a service token (the admin user's, which has the
# "service" role: bootstrap.py); without one Cinder refuses to delete the attachment of a
# live server (ConflictNovaUsingAttachment, bug 2004555) and the volume stays in-use.
service_token_roles_required = true
[nova]
$AUTH
[service_user]
send_service_user_token = false
[oslo_concurrency]
lock_path = $BASE/cinder/lock
[file]
volume_driver = eb_cinder_file_driver.FileVolumeDriver
volume_backend_name = file
eb_file_volumes_dir = $BASE/cinder/volumes
eb_file_capacity_gb = ${CINDER_CAPACITY_GB:-100}
CONF
cp "$VENV/etc/nova/api-paste.ini" "$ETC/nova/api-paste.ini"
printf '[DEFAULT]\nlog_file = %s\n' "$LOG/nova-api.log" >"$ETC/nova/nova-api.conf"
cat >"$ETC/nova/nova.conf" <<CONF
[DEFAULT]
transport_url = $TRANSPORT
compute_driver = $FAKE_DRIVER
host = eb-compute-1
my_ip = 127.0.0.1
state_path = $BASE/nova
instances_path = $BASE/nova/instances
log_dir = $LOG
use_rootwrap_daemon = false
# periodic tasks (the scheduler's host discovery) from the start, not after up to 60 s
periodic_fuzzy_delay = 0
graceful_shutdown_timeout = 2
# one vCPU per core and no reserved memory: the fake hypervisor offers exactly 10 cores, 8 GiB
initial_cpu_allocation_ratio = 1.0
initial_ram_allocation_ratio = 1.0
reserved_host_memory_mb = 0
[api]
auth_strategy = keystone
[api_database]
connection = $DB/nova_api
[database]
connection = $DB/nova_cell1
[keystone_authtoken]
$AUTH
[placement]
$AUTH
[glance]
$AUTH
[neutron]
$AUTH
[cinder]
$AUTH
os_region_name = RegionOne
[service_user]
# Cinder lets only a service (a service token with the "service" role) delete the attachment
# of a server's volume: on server delete, Nova's
send_service_user_token = true
$AUTH
[oslo_concurrency]
lock_path = $BASE/nova/lock
[scheduler]
# map new compute hosts into the cell by itself (no nova-manage cell_v2 discover_hosts call)
discover_hosts_in_cells_interval = 2
[filter_scheduler]
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter
[conductor]
workers = 1
[wsgi]
api_paste_config = $ETC/nova/api-paste.ini
CONF

# ---- database schemas: four independent chains, in parallel
KM=("$VENV/bin/keystone-manage" --config-file "$ETC/keystone/keystone.conf")
NM=("$VENV/bin/nova-manage" --config-file "$ETC/nova/nova.conf")
CINDER=(--config-file "$ETC/cinder/cinder.conf")
(
    "${KM[@]}" db_sync
    "${KM[@]}" fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
    "${KM[@]}" credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)"
    "${KM[@]}" bootstrap --bootstrap-password "$ADMIN_PW" --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "$KS_URL" --bootstrap-internal-url "$KS_URL" --bootstrap-public-url "$KS_URL"
) >"$LOG/sync-keystone.log" 2>&1 &
sync_keystone=$!
OS_PLACEMENT_CONFIG_DIR="$ETC/placement" "$VENV/bin/placement-manage" --config-dir "$ETC/placement" \
    db sync >"$LOG/sync-placement.log" 2>&1 &
sync_placement=$!
"$VENV/bin/glance-manage" --config-file "$ETC/glance/glance-api.conf" db_sync >"$LOG/sync-glance.log" 2>&1 &
sync_glance=$!
"$VENV/bin/cinder-manage" "${CINDER[@]}" db sync >"$LOG/sync-cinder.log" 2>&1 &
sync_cinder=$!
(
    "${NM[@]}" api_db sync
    "${NM[@]}" cell_v2 map_cell0 --database_connection "$DB/nova_cell0"
    "${NM[@]}" cell_v2 create_cell --name cell1 --database_connection "$DB/nova_cell1" --transport-url "$TRANSPORT"
    "${NM[@]}" db sync
) >"$LOG/sync-nova.log" 2>&1 &
sync_nova=$!
wait $sync_keystone || fail "keystone's database setup failed" "$LOG/sync-keystone.log"

# ---- Keystone first (everything else authenticates against it), then the catalogue
uwsgi_app keystone "$KS_PORT" keystone.wsgi.api:application OS_KEYSTONE_CONFIG_FILES="$ETC/keystone/keystone.conf"
cat >"$BASE/clouds.yaml" <<Y
clouds:
  eb-admin:
    auth: {auth_url: "$KS_URL", username: admin, password: "$ADMIN_PW", project_name: admin, user_domain_name: Default, project_domain_name: Default}
    region_name: RegionOne
    identity_api_version: 3
Y
wait_http "$KS_URL" 120 keystone "$RUN/keystone.pid"
# bootstrap.py: one openstacksdk process. It registers the services' endpoints, says so in
# run/catalog.ready, then waits for Nova and Glance and creates flavors and images.
OS_CLIENT_CONFIG_FILE="$BASE/clouds.yaml" daemon bootstrap "$PY" "$HERE/bootstrap.py" "$BASE" \
    --placement "http://127.0.0.1:$PL_PORT" --image "http://127.0.0.1:$GLANCE_PORT" \
    --compute "http://127.0.0.1:$NOVA_PORT/v2.1" --network "http://127.0.0.1:$NEUTRON_PORT" \
    --volume "http://127.0.0.1:$CINDER_PORT/v3/%(project_id)s"

wait $sync_placement || fail "placement's database setup failed" "$LOG/sync-placement.log"
uwsgi_app placement "$PL_PORT" placement.wsgi.api:application OS_PLACEMENT_CONFIG_DIR="$ETC/placement"
wait $sync_glance || fail "glance's database setup failed" "$LOG/sync-glance.log"
uwsgi_app glance "$GLANCE_PORT" glance.wsgi.api:application OS_GLANCE_CONFIG_DIR="$ETC/glance"
daemon neutron-stub "$PY" "$HERE/neutron_stub.py" "$NEUTRON_PORT"
wait $sync_cinder || fail "cinder's database setup failed" "$LOG/sync-cinder.log"
# --pyargv: cinder.wsgi.api reads its configuration files from sys.argv
uwsgi_app cinder-api "$CINDER_PORT" cinder.wsgi.api:application -- \
    --pyargv "${CINDER[*]} --log-file $LOG/cinder-api.log"
wait $sync_nova || fail "nova's database setup failed" "$LOG/sync-nova.log"
for _ in $(seq 1 300); do   # nova's services need the message bus at start
    (exec 3<>"/dev/tcp/127.0.0.1/$RMQ_PORT") 2>/dev/null && break
    kill -0 "$(cat "$RUN/rabbitmq.pid")" 2>/dev/null || fail "RabbitMQ exited" "$LOG/rabbitmq.out"
    sleep 0.2
done
# conductor first: nova-compute's first call goes to it and times out (10 s) when nothing
# consumes the conductor's queue yet
for svc in conductor scheduler; do
    daemon "nova-$svc" "$VENV/bin/nova-$svc" --config-file "$ETC/nova/nova.conf"
done
cinder_service() {
    daemon "cinder-$1" env PYTHONPATH="$HERE" "$VENV/bin/cinder-$1" "${CINDER[@]}" \
        --log-file "$LOG/cinder-$1.log"
}
cinder_service volume
for _ in $(seq 1 300); do
    [ -f "$RUN/catalog.ready" ] && break
    kill -0 "$(cat "$RUN/bootstrap.pid")" 2>/dev/null || fail "bootstrap.py exited" "$LOG/bootstrap.out"
    sleep 0.2
done
[ -f "$RUN/catalog.ready" ] || fail "the service catalogue was not created within 60 s" "$LOG/bootstrap.out"
# nova-compute reports its hypervisor to Placement at start: it needs the catalogue
daemon nova-compute "$VENV/bin/nova-compute" --config-file "$ETC/nova/nova.conf"
start_nova_api
wait_http "http://127.0.0.1:$PL_PORT/" 60 placement "$RUN/placement.pid"
wait_http "http://127.0.0.1:$GLANCE_PORT/" 60 glance "$RUN/glance.pid"
wait_http "http://127.0.0.1:$CINDER_PORT/" 60 cinder-api "$RUN/cinder-api.pid"
# cinder-scheduler asks the volume services for their capacity when it starts; after that
# cinder-volume reports it only every 60 s. So the scheduler starts once cinder-volume
# listens, and places volumes at once.
for _ in $(seq 1 300); do
    grep -q "Driver post RPC initialization completed" "$LOG/cinder-volume.log" 2>/dev/null && break
    kill -0 "$(cat "$RUN/cinder-volume.pid")" 2>/dev/null || fail "cinder-volume exited" "$LOG/cinder-volume.log" "$LOG/cinder-volume.out"
    sleep 0.2
done
cinder_service scheduler

# bootstrap.py finishes once the fake hypervisor is in Placement and mapped into the cell
code=0
wait "$(cat "$RUN/bootstrap.pid")" || code=$?
[ $code = 0 ] || fail "bootstrap.py failed ($code)" "$LOG/bootstrap.out" "$LOG/nova-compute.log" \
    "$LOG/nova-scheduler.log" "$LOG/cinder-volume.log" "$LOG/cinder-scheduler.log"
echo "OS_CLIENT_CONFIG_FILE=$BASE/clouds.yaml OS_CLOUD=eb-admin"
