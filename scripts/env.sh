# Shared setup for scripts/*.sh: one target directory outside the clone (so repeated runs
# on one machine build incrementally) and a Python environment for the test clients.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/basin/target}"
export BASIN_VENV="${BASIN_VENV:-$HOME/.cache/basin/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export BASIN_NODE="${BASIN_NODE:-$HOME/.cache/basin/node}"
export BASIN_NODE_MODULES="$BASIN_NODE/node_modules"

# Creates (or updates) the Python environment with the test clients, quietly.
basin_python_env() {
    if [ ! -x "$BASIN_VENV/bin/python" ]; then
        python3 -m venv "$BASIN_VENV"
    fi
    local stamp="$BASIN_VENV/.requirements.sha"
    local want
    want=$(sha256sum "$ROOT/tests/python/requirements.txt" | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "== installing Python test clients into $BASIN_VENV" >&2
        "$BASIN_VENV/bin/pip" install --quiet -r "$ROOT/tests/python/requirements.txt"
        echo "$want" >"$stamp"
    fi
}

# Installs Debian packages the tests drive (psql, the Postgres server, Chromium) when they are missing. Root or sudo.
basin_system_packages() {
    local missing=()
    command -v psql >/dev/null || missing+=(postgresql-client)
    command -v chromium >/dev/null || missing+=(chromium)
    # The server the Postgres ingest tests start (initdb, pg_ctl), not only its client.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    # The MariaDB server the MySQL ingest tests start (mariadb-install-db, mariadbd).
    [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
    # The `internet` wall: functions with internet=True reach out through it.
    command -v slirp4netns >/dev/null || [ -x /usr/bin/slirp4netns ] || missing+=(slirp4netns)
    # `ip netns`: the internet wall's test puts a host outside Basin's machine in one.
    command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing ${missing[*]} with apt" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# playwright-core (drives Chromium in the console test), pinned, from the npm registry.
basin_node_env() {
    local want="1.64.1"
    if [ "$(cat "$BASIN_NODE/.version" 2>/dev/null)" != "$want" ]; then
        echo "== installing playwright-core $want into $BASIN_NODE" >&2
        mkdir -p "$BASIN_NODE"
        npm install --silent --no-audit --no-fund --prefix "$BASIN_NODE" "playwright-core@$want" >/dev/null
        echo "$want" >"$BASIN_NODE/.version"
    fi
}

# maturin (builds the wheel), pinned, in its own small environment: scripts/dist.sh needs
# none of the test clients.
export BASIN_DIST_VENV="${BASIN_DIST_VENV:-$HOME/.cache/basin/dist-venv}"
basin_dist_env() {
    local want="1.16.0"
    if [ "$("$BASIN_DIST_VENV/bin/maturin" --version 2>/dev/null)" != "maturin $want" ]; then
        echo "== installing maturin $want into $BASIN_DIST_VENV" >&2
        python3 -m venv "$BASIN_DIST_VENV"
        "$BASIN_DIST_VENV/bin/pip" install --quiet "maturin==$want"
    fi
}
