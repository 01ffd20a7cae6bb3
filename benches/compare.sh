#!/usr/bin/env bash
# Benchmark reportedip-report against the curl line it replaces, on a loopback fake API.
#
#   bash benches/compare.sh            # writes benches/RESULTS.md and prints it
#
# Needs: hyperfine, curl, /usr/bin/time (Debian packages hyperfine, curl, time) and python3
# for the arithmetic. Starts its own fake APIs (cargo example `fake-api`) on 127.0.0.1 and
# stops them at the end. Takes about five minutes. Rows 8 (tmpfs) and 9 mount a small tmpfs
# (root only).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in hyperfine curl /usr/bin/time python3 sqlite3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install hyperfine curl time sqlite3)" >&2; exit 1; }
done

cargo build --release --locked -q
cargo build --release --locked -q --example fake-api
BIN=$PWD/target/release/reportedip-report
FAKE=$PWD/target/release/examples/fake-api
OUT=${RESULTS:-$PWD/benches/RESULTS.md}
RUNS=${RUNS:-30}

W=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -d "$W/full" ] && umount -l "$W/full" 2>/dev/null || true
  [ -d "$W/mem" ] && umount -l "$W/mem" 2>/dev/null || true
  # Background senders of the queued scenarios end on their own; give them no API to wait on.
  rm -rf "$W"
}
trap cleanup EXIT

start_fake() { # name mode [extra args]
  "$FAKE" --mode "$2" --port-file "$W/$1.url" --count-file "$W/$1.count" --seconds 1200 "${@:3}" >/dev/null &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$W/$1.url" ] && return; sleep 0.05; done
  echo "fake API $1 did not start" >&2; exit 1
}
config() { # name fake
  printf 'api_key = "bench-key"\napi_url = "%s"\nstate_dir = "%s/state-%s"\nsyslog = false\ncooldown = 0\ntimeout = 10\n' \
    "$(cat "$W/$2.url")" "$W" "$1" > "$W/$1.toml"
  chmod 600 "$W/$1.toml"
  echo "$W/$1.toml"
}
curl_line() { # fake [extra curl args]
  echo "curl -s -o /dev/null -m 10 ${2:-} -X POST -H 'X-Key: bench-key' -H 'Accept: application/json' \
--data-urlencode ip=45.155.205.233 --data-urlencode categories=18,22 \
--data-urlencode 'comment=fail2ban sshd: 5 failed attempts' $(cat "$W/$1.url")/report"
}
median_ms() { # hyperfine json -> median of command N, in ms
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][int(sys.argv[2])]; print("%.2f" % (r["median"]*1000))' "$1" "$2"
}
now_ns() { date +%s%N; }
burst() { # fake: 1000 bans queued one after another; ms until the fake has them all
  local cfg t0 n
  cfg=$(config "$1" "$1")
  t0=$(now_ns)
  for n in $(seq 1000); do
    "$BIN" -c "$cfg" report --queue --categories 18 -- "45.155.$((n / 250)).$((n % 250 + 1))" 2>/dev/null
  done
  while [ "$(cat "$W/$1.count" 2>/dev/null || echo 0)" -lt 1000 ]; do sleep 0.01; done
  echo $(( ($(now_ns) - t0) / 1000000 ))
}
curl_runs() { # command: ms for 1000 runs of it
  local t0 n
  t0=$(now_ns)
  for n in $(seq 1000); do bash -c "exec $1"; done
  echo $(( ($(now_ns) - t0) / 1000000 ))
}

start_fake up up
start_fake slow slow
start_fake hole blackhole
start_fake burst up
start_fake tls up --tls-ca "$W/tls-ca.pem"
start_fake tlsburst up --tls-ca "$W/tlsburst-ca.pem"
# One trust store for both sides: the system bundle plus the fake's CA.
for name in tls tlsburst; do
  cat /etc/ssl/certs/ca-certificates.crt "$W/$name-ca.pem" > "$W/$name-bundle.pem"
done

REPORT="report --jail sshd --failures 5 -- 45.155.205.233"

echo "1/7 one direct report (API up)" >&2
direct=$(config direct up)
hyperfine -N -w 3 -r "$RUNS" --export-json "$W/direct.json" \
  "$BIN -c $direct $REPORT" "$(curl_line up)" >/dev/null
ours_direct=$(median_ms "$W/direct.json" 0)
curl_direct=$(median_ms "$W/direct.json" 1)
# Peak RSS, runs interleaved so that both see the same machine state.
: > "$W/rss-ours"; : > "$W/rss-curl"
for _ in $(seq "$RUNS"); do
  /usr/bin/time -f %M -a -o "$W/rss-ours" "$BIN" -c "$direct" $REPORT 2>/dev/null
  /usr/bin/time -f %M -a -o "$W/rss-curl" bash -c "exec $(curl_line up)"
done
median_file() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ours_rss=$(median_file "$W/rss-ours")
curl_rss=$(median_file "$W/rss-curl")

echo "2/7 ban-path time of report --queue (API up, slow, blackholed)" >&2
declare -A queue curlban
for mode in up slow hole; do
  cfg=$(config "queue-$mode" "$mode")
  hyperfine -N -w 3 -r "$RUNS" --export-json "$W/queue-$mode.json" \
    "$BIN -c $cfg report --queue --jail sshd --failures 5 -- 45.155.205.233" >/dev/null
  queue[$mode]=$(median_ms "$W/queue-$mode.json" 0)
done
curlban[up]=$curl_direct
hyperfine -N -r 5 --export-json "$W/curl-slow.json" "$(curl_line slow)" >/dev/null
curlban[slow]=$(median_ms "$W/curl-slow.json" 0)
hyperfine -N -i -r 3 --export-json "$W/curl-hole.json" "$(curl_line hole)" >/dev/null
curlban[hole]=$(median_ms "$W/curl-hole.json" 0)

echo "3/7 100 direct reports while the API blackholes" >&2
cfg=$(config hundred hole)
t0=$(now_ns)
for n in $(seq 100); do "$BIN" -c "$cfg" report --jail sshd -- "45.155.1.$n" 2>/dev/null; done
ours_hundred=$(( ($(now_ns) - t0) / 1000000 ))
# 100 curl runs would take 100 x 10 s; the per-run cost is measured (3 runs) and multiplied.
curl_hundred=$(python3 -c "print(round(${curlban[hole]} * 100))")

echo "4/7 burst of 1000 queued reports until the API has them all" >&2
ours_burst=$(burst burst)
curl_burst=$(curl_runs "$(curl_line up)")

echo "5/7 one direct report over HTTPS (same trust store for both)" >&2
tls=$(config tls tls)
tls_curl=$(curl_line tls "--cacert $W/tls-bundle.pem")
SSL_CERT_FILE="$W/tls-bundle.pem" hyperfine -N -w 3 -r "$RUNS" --export-json "$W/tls.json" \
  "$BIN -c $tls $REPORT" "$tls_curl" >/dev/null
ours_tls=$(median_ms "$W/tls.json" 0)
curl_tls=$(median_ms "$W/tls.json" 1)
: > "$W/rss-tls-ours"; : > "$W/rss-tls-curl"
for _ in $(seq "$RUNS"); do
  SSL_CERT_FILE="$W/tls-bundle.pem" /usr/bin/time -f %M -a -o "$W/rss-tls-ours" "$BIN" -c "$tls" $REPORT 2>/dev/null
  /usr/bin/time -f %M -a -o "$W/rss-tls-curl" bash -c "exec $tls_curl"
done
ours_tls_rss=$(median_file "$W/rss-tls-ours")
curl_tls_rss=$(median_file "$W/rss-tls-curl")

echo "6/7 burst of 1000 queued reports over HTTPS until the API has them all" >&2
ours_tls_burst=$(SSL_CERT_FILE="$W/tlsburst-bundle.pem" burst tlsburst)
curl_tls_burst=$(curl_runs "$(curl_line tlsburst "--cacert $W/tlsburst-bundle.pem")")

# A store as a run leaves it, then filled by SQL: `fill_store DIR SPOOL_ROWS COOLDOWN_IPS`.
# The API is held in backoff, so no sender runs while the ban path is measured.
fill_store() {
  local cfg=$1
  "$BIN" -c "$cfg" upgrade-state >/dev/null
  python3 - "$2" "$3" "$4" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1] + "/state.db")
now = int(time.time())
spool, ips = int(sys.argv[2]), int(sys.argv[3])
addr = lambda n: "45.%d.%d.%d" % (100 + n // 62500, n // 250 % 250, n % 250 + 1)
db.executemany("INSERT INTO spool (ip, categories, comment, queued_at) VALUES (?, '18', 'c', ?)",
               ((addr(n), now) for n in range(spool)))
# Every IP reported within the day with two categories, as sshd's bans are.
db.executemany("INSERT INTO cooldown (ip, category, at) VALUES (?, ?, ?)",
               ((addr(n), c, now - n % 80000) for n in range(ips) for c in (18, 22)))
db.execute("UPDATE state SET backoff_until = ?, backoff_granted = 3600, backoff_reason = 'benchmark'",
           (now + 3600,))
db.commit()
PY
}
# The prepare step forgets the benchmark's IP so that every run takes the whole ban path. It
# must leave the write-ahead log as a ban leaves it (no checkpoint when it closes), or each
# measured run would start from a fresh log, which no ban sees in service.
forget() { # db
  echo "sqlite3 $1 '.dbconfig no_ckpt_on_close on' \"DELETE FROM cooldown WHERE ip = '45.155.205.233'\""
}
# Ban-path median for a store: each run reports a fresh IP (the prepare step forgets it), so
# every run takes the cooldown check, the spool insert and the commit.
history_ms() { # name spool_rows cooldown_ips
  local cfg
  cfg=$(config "$1" hole)
  sed -i 's/^cooldown = 0$/cooldown = 86400/' "$cfg"
  fill_store "$cfg" "$W/state-$1" "$2" "$3"
  hyperfine -N -w 3 -r "$RUNS" --export-json "$W/$1.json" \
    --prepare "$(forget "$W/state-$1/state.db")" \
    "$BIN -c $cfg report --queue --categories 18,22 -- 45.155.205.233" >/dev/null
  median_ms "$W/$1.json" 0
}

echo "7/9 ban path with 10,000 reports waiting, and with 20,000 and 100,000 IPs in the cooldown" >&2
ours_empty=$(history_ms hist-empty 0 0)
ours_deep=$(history_ms deep 10000 0)
ours_hist20=$(history_ms hist-20k 0 20000)
ours_hist100=$(history_ms hist-100k 0 100000)
rows_hist100=$(python3 -c "import sqlite3; print(sqlite3.connect('$W/state-hist-100k/state.db').execute('SELECT count(*) FROM cooldown').fetchone()[0])")
size_hist100=$(stat -c %s "$W/state-hist-100k/state.db")

echo "8/9 ban path with state_dir on a full file system, API blackholed" >&2
ours_full="(not measured: needs root and tmpfs)"
mkdir -p "$W/full"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=256k,mode=0700 tmpfs "$W/full" 2>/dev/null; then
  full=$(config full hole)
  sed -i "s|$W/state-full|$W/full/state|" "$full"
  mkdir -p "$W/full/state" && chmod 700 "$W/full/state"
  dd if=/dev/zero of="$W/full/filler" bs=4096 2>/dev/null || true
  export REPORTEDIP_RUNTIME_DIR="$W/run"
  "$BIN" -c "$full" report --queue --categories 18 -- 45.155.205.1 2>/dev/null
  hyperfine -N -r 10 --export-json "$W/full.json" \
    "$BIN -c $full report --queue --categories 18 -- 45.155.205.2" >/dev/null 2>&1
  unset REPORTEDIP_RUNTIME_DIR
  ours_full="$(median_ms "$W/full.json" 0) ms"
  umount -l "$W/full"
fi

echo "8b/9 what the durable commit costs: the same ban path with state_dir on a tmpfs" >&2
ours_tmpfs="(not measured: needs root and tmpfs)"
mkdir -p "$W/mem"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=64m,mode=0700 tmpfs "$W/mem" 2>/dev/null; then
  mem=$(config mem hole)
  sed -i "s|$W/state-mem|$W/mem/state|; s/^cooldown = 0$/cooldown = 86400/" "$mem"
  fill_store "$mem" "$W/mem/state" 0 0
  hyperfine -N -w 3 -r "$RUNS" --export-json "$W/mem.json" \
    --prepare "$(forget "$W/mem/state/state.db")" \
    "$BIN -c $mem report --queue --categories 18,22 -- 45.155.205.233" >/dev/null
  ours_tmpfs="$(median_ms "$W/mem.json" 0)"
  umount -l "$W/mem"
fi

echo "9/9 dry-run start-up and binary size" >&2
hyperfine -N -w 5 -r 100 --export-json "$W/dry.json" \
  "$BIN -c /nonexistent report --dry-run --jail sshd -- 45.155.205.233" >/dev/null
ours_dry=$(median_ms "$W/dry.json" 0)
size=$(stat -c %s "$BIN")

ratio() { python3 -c "print('%.2g' % ($1 / $2))"; }
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
{
  echo "# Benchmark results"
  echo
  echo "Produced by \`bash benches/compare.sh\` on $(date -u +%Y-%m-%d): $(nproc) cores ($cpu),"
  echo "$(free -g | awk '/Mem:/ {print $2}') GiB, Linux $(uname -r), $(curl --version | head -n 1 | cut -d' ' -f1-2),"
  echo "$(hyperfine --version). reportedip-report $("$BIN" --version | cut -d' ' -f2), release profile."
  echo "Loopback fake API: plain HTTP on 127.0.0.1 for rows 1-5 and 8-9; rows 6-7 over TLS 1.3 with a"
  echo "certificate from a CA made at start, both sides trusting the system bundle plus that CA."
  echo "Times are medians of $RUNS runs unless noted; lower ratio is better for us. A ban-path time"
  echo "is the whole process: start, config, store open (its write-ahead log as the previous ban"
  echo "left it), one transaction, one fdatasync of the log, exit; every few bans one run also"
  echo "folds the log into the database."
  echo
  echo "| measurement | reportedip-report | curl line | ratio ours/curl | target |"
  echo "|---|---:|---:|---:|---|"
  echo "| 1. one direct report, wall time | ${ours_direct} ms | ${curl_direct} ms | $(ratio "$ours_direct" "$curl_direct") | ≤ 0.5 |"
  echo "| 1. one direct report, peak RSS | ${ours_rss} KiB | ${curl_rss} KiB | $(ratio "$ours_rss" "$curl_rss") | ≤ 1.0 |"
  echo "| 2. ban path, API up (\`--queue\` vs curl) | ${queue[up]} ms | ${curlban[up]} ms | $(ratio "${queue[up]}" "${curlban[up]}") | ≤ 5 ms |"
  echo "| 2. ban path, API slow (1 s per answer) | ${queue[slow]} ms | ${curlban[slow]} ms (5 runs) | $(ratio "${queue[slow]}" "${curlban[slow]}") | ≤ 5 ms |"
  echo "| 2. ban path, API blackholed | ${queue[hole]} ms | ${curlban[hole]} ms (3 runs) | $(ratio "${queue[hole]}" "${curlban[hole]}") | ≤ 5 ms |"
  echo "| 3. 100 direct reports, API blackholed, total | ${ours_hundred} ms | ${curl_hundred} ms (100 × measured run) | $(ratio "$ours_hundred" "$curl_hundred") | ≤ 15000 ms |"
  echo "| 4. 1000 queued reports until all received | ${ours_burst} ms | ${curl_burst} ms (1000 runs) | $(ratio "$ours_burst" "$curl_burst") | < curl |"
  echo "| 5. \`report --dry-run\` start-up | ${ours_dry} ms | | | |"
  echo "| 5. release binary size (SQLite included) | $size bytes | | | ≤ 4500000 |"
  echo "| 6. one direct HTTPS report, wall time | ${ours_tls} ms | ${curl_tls} ms | $(ratio "$ours_tls" "$curl_tls") | ≤ 0.5 |"
  echo "| 6. one direct HTTPS report, peak RSS | ${ours_tls_rss} KiB | ${curl_tls_rss} KiB | $(ratio "$ours_tls_rss" "$curl_tls_rss") | ≤ 1.0 |"
  echo "| 7. 1000 queued reports over HTTPS until all received | ${ours_tls_burst} ms | ${curl_tls_burst} ms (1000 runs) | $(ratio "$ours_tls_burst" "$curl_tls_burst") | < curl |"
  echo "| 8. ban path, empty store (API in backoff, cooldown on) | ${ours_empty} ms | | | ≤ 5 ms |"
  echo "| 8. ban path with 10,000 reports waiting | ${ours_deep} ms | | | ≤ 5 ms |"
  echo "| 8. ban path after 20,000 distinct IPs in the cooldown | ${ours_hist20} ms | | $(ratio "$ours_hist20" "$ours_empty") × empty | ≤ 1.5 × empty + 1 ms |"
  echo "| 8. ban path after 100,000 distinct IPs in the cooldown ($rows_hist100 rows, state.db $size_hist100 bytes) | ${ours_hist100} ms | | $(ratio "$ours_hist100" "$ours_empty") × empty | ≤ 1.5 × empty + 1 ms |"
  echo "| 8. the empty-store ban path with state_dir on a tmpfs (no fsync): the durable commit costs the difference | ${ours_tmpfs} ms | | | |"
  echo "| 9. ban path after the first failure, state_dir on a full file system, API blackholed (10 runs) | ${ours_full} | ${curlban[hole]} ms | | ≤ 1000 ms |"
  echo
  cargo bench --locked -q --bench quota_day 2>/dev/null
} > "$OUT"
cat "$OUT"
