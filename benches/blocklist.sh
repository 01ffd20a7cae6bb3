#!/usr/bin/env bash
# The blocklist against nft alone and against one iptables call per address, inside a private
# network namespace (never the host's firewall).
#
#   bash benches/blocklist.sh          # prints a table; needs root, nftables, iptables, python3
#
# For 22,000 and 100,000 addresses: `blocklist apply` (read the saved list, filter, render,
# one nft transaction) against `nft -f` loading the very script apply loads, and the peak
# memory of each. The feed's own iptables script runs one iptables process per address; the
# same loop of single-address rules is timed on a 2,000-address cut and extrapolated.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in nft ip iptables python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install nftables iproute2 iptables python3 time)" >&2; exit 1; }
done
cargo build --release --locked -q
BIN=$PWD/target/release/reportedip-report
W=$(mktemp -d)
NS=ripbench-$$
ip netns add "$NS"
cleanup() { ip netns del "$NS" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up

ms() { python3 -c "import sys; print('%.0f' % ((int(sys.argv[2]) - int(sys.argv[1])) / 1e6))" "$1" "$2"; }
now() { date +%s%N; }

echo "| addresses | blocklist apply | nft -f alone | ratio | peak RSS apply (ours, nft) | peak RSS nft -f alone |"
echo "|---:|---:|---:|---:|---:|---:|"
for count in 22000 100000; do
  state=$W/state-$count
  mkdir -p "$state/blocklist" && chmod 700 "$state" "$state/blocklist"
  python3 - "$count" > "$state/blocklist/list.txt" <<'PY'
import random, sys
random.seed(2026)
seen = set()
while len(seen) < int(sys.argv[1]):
    seen.add("%d.%d.%d.%d" % (random.randint(45, 90), random.randint(0, 255), random.randint(0, 255), random.randint(1, 254)))
print("\n".join(sorted(seen)))
PY
  echo '{"selection":{"lists":["all"],"min_confidence":null},"validators":{"etag":null,"last_modified":null},"version":"bench","generated_at":null,"fetched_at":0,"fail2ban_ignore":[]}' > "$state/blocklist/saved.json"
  chmod 600 "$state/blocklist/"*
  cfg=$W/c-$count.toml
  printf 'state_dir = "%s"\nsyslog = false\n\n[blocklist]\nmax_entries = 1000000\n' "$state" > "$cfg"
  chmod 600 "$cfg"
  in_ns "$BIN" -c "$cfg" blocklist print > "$W/script-$count.nft"
  in_ns nft delete table inet reportedip 2>/dev/null || true
  runs_ours=(); runs_nft=()
  for _ in 1 2 3 4 5; do
    t0=$(now); in_ns "$BIN" -c "$cfg" blocklist apply >/dev/null; t1=$(now)
    runs_ours+=("$(ms "$t0" "$t1")")
    t0=$(now); in_ns nft -f "$W/script-$count.nft"; t1=$(now)
    runs_nft+=("$(ms "$t0" "$t1")")
  done
  median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
  ours=$(median "${runs_ours[@]}"); alone=$(median "${runs_nft[@]}")
  rss_ours=$(in_ns /usr/bin/time -f %M "$BIN" -c "$cfg" blocklist apply 2>&1 >/dev/null | tail -n 1)
  rss_nft=$(in_ns /usr/bin/time -f %M nft -f "$W/script-$count.nft" 2>&1 | tail -n 1)
  ratio=$(python3 -c "print('%.2f' % ($ours / $alone))")
  echo "| $count | $ours ms | $alone ms | $ratio | $rss_ours KiB | $rss_nft KiB |"
done

# One iptables process per address, as the feed's formats/iptables.sh does, on a cut.
cut=2000
in_ns iptables -N RIPBENCH
t0=$(now)
head -n "$cut" "$W/state-22000/blocklist/list.txt" | while read -r addr; do in_ns iptables -A RIPBENCH -s "$addr" -j DROP; done
t1=$(now)
per=$(python3 -c "print((int('$t1') - int('$t0')) / 1e6 / $cut)")
echo
echo "One iptables call per address: $cut calls took $(ms "$t0" "$t1") ms ($(python3 -c "print('%.1f' % $per)") ms each);"
echo "extrapolated to 22,390 calls: $(python3 -c "print('%.0f' % ($per * 22390 / 1000))") s (measured on the cut, not run in full)."
