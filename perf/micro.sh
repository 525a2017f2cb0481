#!/usr/bin/env bash
# Runs the micro-benchmarks of the dataplane, handoff-proto and controlplane
# crates (every `harness = false` bench they declare) and stores each one's
# printed figures as perf/results/micro-<crate>-<bench>.json, which
# `baton-bench --micro` folds into the results and docs/performance.md.
# Usage: perf/micro.sh [--features dpdk]   (features apply to the dataplane
# and the controlplane, which passes them on)
#        MICRO_ONLY=controlplane/decision_hop perf/micro.sh --features dpdk
#        runs only the benches whose crate/bench name contains MICRO_ONLY.
set -uo pipefail
cd "$(dirname "$0")/.."
out=perf/results
mkdir -p "$out"
files=()
for crate in dataplane handoff-proto controlplane; do
  for b in $(awk '/^\[\[bench\]\]/{f=1;next} f&&/^name *=/{gsub(/"/,"",$3);print $3;f=0}' "$crate/Cargo.toml"); do
    [[ -n ${MICRO_ONLY:-} && $crate/$b != *"$MICRO_ONLY"* ]] && continue
    f="$out/micro-$crate-$b.json"
    echo "micro: $crate/$b" >&2
    # Each bench prints its figures; keep stdout lines verbatim as JSON.
    # Feature flags (e.g. --features dpdk) exist on the dataplane and the
    # controlplane only.
    args=(); [[ $crate == dataplane || $crate == controlplane ]] && args=("$@")
    if text=$(timeout 300 cargo bench -q -p "$crate" --bench "$b" "${args[@]}" 2>/dev/null); then
      python3 -c '
import json, sys
crate, bench, path = sys.argv[1:4]
lines = [l.rstrip() for l in sys.stdin.read().splitlines() if l.strip()]
json.dump({"crate": crate, "bench": bench, "command": "cargo bench -p %s --bench %s" % (crate, bench), "output": lines}, open(path, "w"), indent=1)
' "$crate" "$b" "$f" <<<"$text"
      files+=("$f")
    else
      echo "micro: $crate/$b failed or timed out; left out" >&2
    fi
  done
done
printf '%s\n' "${files[@]}"
