#!/usr/bin/env bash
# A before/after comparison on one machine state: runs `baton-bench` from
# two builds in the order before, after, after, before (so drift over the
# run falls on both sides), then prints per-cell medians of each side with
# perf/ab_compare.py. Each build is a directory holding `baton-bench` and the
# binaries it starts (`baton`, `baton-agent`, `libbaton_handover.so`,
# `examples/`), e.g. a copy of target/release taken before a change.
# Usage: perf/ab.sh BEFORE_DIR AFTER_DIR OUT_DIR [baton-bench options…]
#   e.g. perf/ab.sh /tmp/before target/release /tmp/ab \
#          --only direct,haproxy,baton-afpacket,baton-dpdk,baton-afxdp
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 3 ]] || { sed -n 2,10p "$0" >&2; exit 2; }
before=$(realpath "$1"); after=$(realpath "$2"); out=$3; shift 3
mkdir -p "$out"
for run in before-1 after-1 after-2 before-2; do
  dir=$before; [[ $run == after-* ]] && dir=$after
  cp docs/performance.md "$out/$run.md"   # the bench rewrites a doc's table
  echo "ab: $run ($dir)" >&2
  BATON_BIN_DIR=$dir "$dir/baton-bench" --out-dir "$out/$run" --doc "$out/$run.md" "$@" \
    > "$out/$run.log" 2>&1
done
python3 perf/ab_compare.py "$out"/before-*/2*.json -- "$out"/after-*/2*.json
