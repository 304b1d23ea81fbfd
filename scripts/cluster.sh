#!/usr/bin/env bash
# A Basin cluster on this machine's loopback: Postgres (the Debian package, its own data
# folder, a free port) for the catalog and the event queue, an S3-protocol server (moto) for
# the warehouse and a landing bucket, one `basin serve --queue-only` and two `basin worker`s,
# each in its own folder as if on its own host; the serve node runs the SQL scheduler and the
# workers join it with executors. Then the demo: 200 files land in the bucket, the workers load
# them into raw.landed, and the serve node answers SQL over HTTP, run by the workers' executors.
#
#   scripts/cluster.sh           # run the demo, then stop everything
#   scripts/cluster.sh --keep    # leave the cluster running (Ctrl-C stops it)
#
# docs/scale-out.md explains the same setup on real hosts.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/scripts/env.sh"
cd "$ROOT"
KEEP=${1:-}

basin_system_packages
basin_python_env
echo "== building basin" >&2
cargo build --quiet --workspace  # the features the test suite builds with: no second build
BASIN="$CARGO_TARGET_DIR/debug/basin"

WORK=$(mktemp -d /tmp/basin-cluster.XXXXXX)
chmod 755 "$WORK"  # Postgres runs as nobody under root
PIDS=()
PG_BIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
AS_PG=()
[ "$(id -u)" -eq 0 ] && AS_PG=(runuser -u nobody --)  # initdb refuses to run as root
stop() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap stop EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== Postgres for the catalog" >&2
export PGPASSWORD=basin-cluster-pw
mkdir -p "$WORK/pg"
echo "$PGPASSWORD" >"$WORK/pg/pw"
[ ${#AS_PG[@]} -gt 0 ] && chown -R nobody "$WORK/pg"
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -U basin -E UTF8 --locale=C --no-sync \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$WORK/pg/pw" >/dev/null
PG_PORT=$(free_port)
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK/pg" start >/dev/null
"${AS_PG[@]}" "$PG_BIN/createdb" -h "$WORK/pg" -p "$PG_PORT" -U basin basin
CATALOG="postgres://basin@127.0.0.1:$PG_PORT/basin"

echo "== an S3-protocol server (moto) for the warehouse and the landing bucket" >&2
S3_PORT=$(free_port)
"$BASIN_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
export BASIN_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" BASIN_S3_ACCESS_KEY_ID=cluster \
    BASIN_S3_SECRET_ACCESS_KEY=cluster BASIN_S3_REGION=us-east-1
s3() { "$BASIN_VENV/bin/python" -c "
import boto3, sys
s3 = boto3.client('s3', endpoint_url='$BASIN_S3_ENDPOINT', aws_access_key_id='cluster',
                  aws_secret_access_key='cluster', region_name='us-east-1')
$1"; }
for _ in $(seq 50); do s3 "s3.list_buckets()" 2>/dev/null && break; sleep 0.2; done
s3 "s3.create_bucket(Bucket='lake'); s3.create_bucket(Bucket='drop')"

SCHEDULER_PORT=$(free_port)
# Every node names the SQL scheduler (the serve node runs it, the workers join it with
# executors); "ballista" sends every query that can go to the executors.
SETTINGS="[buckets.incoming]
url = \"s3://drop/incoming/\"
poll_seconds = 1

[sql]
engine = \"ballista\"

[sql.ballista]
scheduler = \"127.0.0.1:$SCHEDULER_PORT\"
"
echo "== node serve: basin init --catalog $CATALOG --warehouse s3://lake/warehouse" >&2
mkdir -p "$WORK/serve" "$WORK/functions"
echo "$SETTINGS" >"$WORK/serve/basin.toml"
"$BASIN" init "$WORK/serve" --catalog "$CATALOG" --warehouse s3://lake/warehouse
cat >"$WORK/functions/loader.py" <<'EOF'
import basin


@basin.python("3.11", timeout="30s")
@basin.on_object(bucket="incoming", suffix=".csv", to="raw.landed", batch_size=20)
def load(event, context):
    return context.read_table()
EOF
"$BASIN" --home "$WORK/serve" deploy "$WORK/functions"
HTTP_PORT=$(free_port)
"$BASIN" --home "$WORK/serve" serve --no-auth --queue-only --listen "127.0.0.1:$HTTP_PORT" \
    2>"$WORK/serve.log" &
PIDS+=($!)
for n in 1 2; do
    echo "== node worker$n: basin worker --join $CATALOG" >&2
    mkdir -p "$WORK/worker$n"
    echo "$SETTINGS" >"$WORK/worker$n/basin.toml"
    "$BASIN" --home "$WORK/worker$n" worker --join "$CATALOG" 2>"$WORK/worker$n.log" &
    PIDS+=($!)
done

echo "== 200 files land in s3://drop/incoming/" >&2
s3 "
for i in range(200):
    s3.put_object(Bucket='drop', Key=f'incoming/{i:03}.csv', Body=f'id,amount\n{i},{i * 1.5}\n'.encode())"
query() { curl -sf "http://127.0.0.1:$HTTP_PORT/api/v1/query" -H 'content-type: application/json' -d "{\"sql\": \"$1\"}"; }
for _ in $(seq 240); do
    n=$(query "SELECT count(*) AS n FROM raw.landed" 2>/dev/null | "$BASIN_VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["rows"][0]["n"])' 2>/dev/null || echo 0)
    [ "$n" = 200 ] && break
    sleep 0.5
done
echo "== raw.landed, read through the serve node:" >&2
query "SELECT count(*) AS files, sum(amount) AS total FROM raw.landed"
echo
echo "== where that query ran (EXPLAIN's engine row):" >&2
query "EXPLAIN SELECT count(*) AS files, sum(amount) AS total FROM raw.landed" |
    "$BASIN_VENV/bin/python" -c 'import json,sys; print(*[r["plan"] for r in json.load(sys.stdin)["rows"] if r["plan_type"] == "engine"])'

echo "== who ran what:" >&2
"$BASIN" --home "$WORK/serve" events ls --function load --limit 5000 --format json |
    "$BASIN_VENV/bin/python" -c 'import collections,json,sys; print(dict(collections.Counter(e["node"] for e in json.load(sys.stdin))))'
if [ "$KEEP" = "--keep" ]; then
    echo "cluster running: catalog $CATALOG, http://127.0.0.1:$HTTP_PORT, folders in $WORK (Ctrl-C stops)" >&2
    wait
fi
