#!/bin/sh
# The query path next to PostgreSQL (issue 22): pgbench point selects and single-row inserts
# at several client counts, a 1,000,000-row SELECT through psql and a bulk load, against the
# release `cairn` and, where it is installed, PostgreSQL 15 (a throwaway cluster), in one
# run; prints one table with the ratios.
#
#   sh server/benches/query_path.sh            # 20 s a workload
#   SECONDS_EACH=5 ROWS=100000 sh server/benches/query_path.sh
#
# Needs pgbench and psql (Debian: postgresql-client-15; the server, postgresql-15, for the
# comparison). Runs as root or as a user that can run PostgreSQL's initdb.
set -eu

SECONDS_EACH=${SECONDS_EACH:-20}
ROWS=${ROWS:-1000000}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
CAIRN_PORT=55480
PG_PORT=55432
PG_BIN=/usr/lib/postgresql/15/bin
trap 'kill $CAIRN_PID 2>/dev/null || true; [ -n "${PG_UP:-}" ] && run_pg "$PG_BIN/pg_ctl -D $WORK/pg stop -m fast" >/dev/null 2>&1; rm -rf "$WORK"' EXIT

command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-client-15" >&2; exit 1; }
(cd "$REPO" && cargo build --release --quiet --bin cairn)

cat > "$WORK/select.sql" <<EOF
\set id random(1, $ROWS)
SELECT k, pad FROM bench WHERE id = :id;
EOF
cat > "$WORK/insert.sql" <<'EOF'
\set k random(1, 1000000)
INSERT INTO ins(k, pad) VALUES (:k, 'x');
EOF

# Cairn on a config of its own: a data directory in $WORK, no plugins.
mkdir -p "$WORK/cairn"
cat > "$WORK/cairn/cairn.toml" <<EOF
[server]
listen = "127.0.0.1:$CAIRN_PORT"
data_dir = "data"
[backup]
directory = "backups"
[users.admin]
role = "admin"
password_env = "CAIRN_BENCH_PASSWORD"
EOF
CAIRN_BENCH_PASSWORD=bench CAIRN_LOG=warn "$REPO/target/release/cairn" serve --config "$WORK/cairn/cairn.toml" >"$WORK/cairn.log" 2>&1 &
CAIRN_PID=$!

run_pg() {
    if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sh -c "$1"; fi
}
PG=""
if [ -x "$PG_BIN/initdb" ]; then
    mkdir -p "$WORK/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$WORK" "$WORK/pg"
    run_pg "$PG_BIN/initdb -D $WORK/pg -A trust -U postgres >/dev/null"
    run_pg "$PG_BIN/pg_ctl -D $WORK/pg -o '-p $PG_PORT -k $WORK' -l $WORK/pg/log start >/dev/null"
    PG_UP=1
    PG=yes
else
    echo "PostgreSQL 15 is not installed ($PG_BIN): Cairn's figures only" >&2
fi

cairn_sql() { PGPASSWORD=bench psql -X -q -A -t -h 127.0.0.1 -p $CAIRN_PORT -U admin -d default "$@"; }
pg_sql() { psql -X -q -A -t -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres "$@"; }
for _ in $(seq 1 50); do cairn_sql -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done

# One bulk load each (one transaction), timed by the client.
elapsed() { start=$(date +%s.%N); "$@" >/dev/null; end=$(date +%s.%N); awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'; }
CAIRN_LOAD=$(elapsed cairn_sql -c "CREATE TABLE bench(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT); CREATE TABLE ins(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $ROWS) INSERT INTO bench SELECT x, x * 7, hex(randomblob(30)) FROM c")
[ -n "$PG" ] && PG_LOAD=$(elapsed pg_sql -c "CREATE TABLE bench(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT); CREATE TABLE ins(id SERIAL PRIMARY KEY, k INTEGER, pad TEXT); INSERT INTO bench SELECT x, x * 7, md5(x::text) || substr(md5((x + 1)::text), 1, 28) FROM generate_series(1, $ROWS) x")

tps() { # script clients port user database password
    PGPASSWORD=$6 pgbench -n -M prepared -f "$WORK/$1" -c "$2" -j "$(( $2 < 2 ? $2 : 2 ))" -T "$SECONDS_EACH" -h 127.0.0.1 -p "$3" -U "$4" "$5" 2>/dev/null \
        | awk '/^tps/ { printf "%d", $3 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# The Cairn server's CPU (all its threads, user and system) in clock ticks so far.
cairn_cpu() { awk '{ print $14 + $15 }' "/proc/$CAIRN_PID/stat"; }
TICK=$(getconf CLK_TCK)
# Runs a workload against Cairn and notes the server's CPU per transaction in cpu.md:
# label script clients.
cairn_tps() {
    before=$(cairn_cpu)
    rate=$(tps "$2" "$3" $CAIRN_PORT admin default bench)
    after=$(cairn_cpu)
    awk -v l="$1" -v t="$((after - before))" -v r="$rate" -v s="$SECONDS_EACH" -v k="$TICK" \
        'BEGIN { printf "| %s | %.1f |\n", l, t / k * 1e6 / (r * s) }' >> "$WORK/cpu.md"
    echo "$rate"
}
clients() { [ "$1" = 1 ] && echo "1 client" || echo "$1 clients"; }
row() { # label cairn pg
    if [ -n "$PG" ] && [ -n "$3" ]; then
        printf '| %s | %s | %s | %s× |\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"
    else
        printf '| %s | %s | – | – |\n' "$1" "$2"
    fi
}
echo
echo "rows: $ROWS, $SECONDS_EACH s a workload, pgbench -M prepared"
echo
echo "| workload | Cairn | PostgreSQL 15 | Cairn / PostgreSQL |"
echo "|---|---|---|---|"
for c in 1 4 16; do
    C=$(cairn_tps "point SELECT, $(clients $c)" select.sql $c)
    P=""; [ -n "$PG" ] && P=$(tps select.sql $c $PG_PORT postgres postgres "")
    row "point SELECT, $(clients $c) (tps)" "$C" "$P"
done
for c in 1 4; do
    C=$(cairn_tps "single-row INSERT, $(clients $c)" insert.sql $c)
    P=""; [ -n "$PG" ] && P=$(tps insert.sql $c $PG_PORT postgres postgres "")
    row "single-row INSERT, $(clients $c) (tps)" "$C" "$P"
    [ "$c" = 1 ] && INSERT_1=$C
done
# SQLite driven directly with Cairn's pragmas (WAL, synchronous=FULL), one autocommit insert
# after another from its shell: the floor under a server's single-client commit.
if command -v sqlite3 >/dev/null; then
    DIRECT_N=20000
    { echo "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE ins(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT);"
      awk -v n=$DIRECT_N 'BEGIN { srand(1); for (i = 0; i < n; i++) printf "INSERT INTO ins(k, pad) VALUES (%d, '"'"'x'"'"');\n", int(rand() * 1000000) }'
    } > "$WORK/direct.sql"
    D=$(elapsed sh -c "sqlite3 '$WORK/direct.sqlite' < '$WORK/direct.sql'")
    DIRECT=$(awk -v n=$DIRECT_N -v s="$D" 'BEGIN { printf "%d", n / s }')
    printf '| single-row INSERT, 1 client, SQLite direct (tps) | %s (Cairn: %s× of it) | – | – |\n' "$DIRECT" "$(ratio "$INSERT_1" "$DIRECT")"
fi
C=$(elapsed cairn_sql -c "SELECT * FROM bench")
P=""; [ -n "$PG" ] && P=$(elapsed pg_sql -c "SELECT * FROM bench")
# Times: PostgreSQL's over Cairn's, so that above 1× Cairn is faster, as for the rates.
if [ -n "$PG" ]; then
    printf '| %s-row SELECT through psql (s) | %.2f | %.2f | %s× |\n' "$ROWS" "$C" "$P" "$(ratio "$P" "$C")"
    printf '| bulk load of %s rows, one transaction (s) | %.2f | %.2f | %s× |\n' "$ROWS" "$CAIRN_LOAD" "$PG_LOAD" "$(ratio "$PG_LOAD" "$CAIRN_LOAD")"
else
    printf '| %s-row SELECT through psql (s) | %.2f | – | – |\n' "$ROWS" "$C"
    printf '| bulk load of %s rows, one transaction (s) | %.2f | – | – |\n' "$ROWS" "$CAIRN_LOAD"
fi
echo
echo "The Cairn server's CPU per transaction, all its threads (user and system, from /proc):"
echo
echo "| workload | µs |"
echo "|---|---|"
cat "$WORK/cpu.md"
echo
# The peak counts the database's pages once for each session that mapped them ([server]
# mmap_size): they are the kernel's page cache, shared and reclaimable. The server's own
# memory is its anonymous part.
echo "Cairn's server resident size after the run: $(awk '/VmHWM/ { print $2 " kB (peak, mapped database pages counted once per session)" }' /proc/$CAIRN_PID/status); its own (anonymous) memory: $(awk '/RssAnon/ { print $2 " kB" }' /proc/$CAIRN_PID/status)"
