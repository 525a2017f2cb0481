#!/usr/bin/env python3
"""Medians of `baton-bench` results files, before against after.

Usage: perf/ab_compare.py BEFORE.json… -- AFTER.json…

Prints two Markdown tables: the new-connection cells (req/s, failed
requests, machine CPU per request, and the agent's and switch workers'
shares from the cost ledger) and the serial latency probe. Figures are
medians over each side's files; failures are summed.
"""
import json
import statistics
import sys


def load(paths):
    return [json.load(open(p)) for p in paths]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(x):
    if x is None:
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"


def cells(runs):
    out = {}
    for d in runs:
        for r in d["rows"]:
            k = (r["system"], r.get("polling") or "–", r["size"], r["connection"],
                 r.get("protocol") or "http")
            out.setdefault(k, []).append(r)
    return out


def ledger(rows, field):
    return med([(r.get("ledger") or {}).get(field) for r in rows])


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    i = argv.index("--")
    before, after = cells(load(argv[:i])), cells(load(argv[i + 1:]))
    print("| system | polling | size | connection | protocol | req/s before | after | after/before "
          "| failed before | after | machine CPU µs/req before | after | agent µs before | after "
          "| switch workers µs before | after |")
    print("|---|---|---|---|---|" + "---:|" * 11)
    for k, b in before.items():
        a = after.get(k)
        if not a or k[3] != "new conn":
            continue
        rb, ra = med([r["rps"] for r in b]), med([r["rps"] for r in a])
        cb = med([r["cpu_machine_s_per_1k"] * 1000 for r in b])
        ca = med([r["cpu_machine_s_per_1k"] * 1000 for r in a])
        ratio = f"{ra / rb:.2f}" if rb and ra else "–"
        print(f"| {' | '.join(k)} | {fmt(rb)} | {fmt(ra)} | {ratio} "
              f"| {sum(r['failures'] for r in b)} | {sum(r['failures'] for r in a)} "
              f"| {fmt(cb)} | {fmt(ca)} | {fmt(ledger(b, 'agent_us'))} | {fmt(ledger(a, 'agent_us'))} "
              f"| {fmt(ledger(b, 'switch_workers_us'))} | {fmt(ledger(a, 'switch_workers_us'))} |")
    print()
    probes = lambda runs: {(p["system"], p.get("polling") or "–", p["size"]): p
                           for d in runs for p in d.get("probe", [])}
    pb = [probes([d]) for d in load(argv[:i])]
    pa = [probes([d]) for d in load(argv[i + 1:])]
    print("| system | polling | size | probe p50 µs before | after | p99 before | after "
          "| added p50 before | after |")
    print("|---|---|---|" + "---:|" * 6)
    for k in pb[0]:
        b = [p[k] for p in pb if k in p]
        a = [p[k] for p in pa if k in p]
        if not a:
            continue
        g = lambda rows, f: fmt(med([r.get(f) for r in rows]))
        print(f"| {' | '.join(k)} | {g(b, 'p50_us')} | {g(a, 'p50_us')} | {g(b, 'p99_us')} "
              f"| {g(a, 'p99_us')} | {g(b, 'added_p50_us')} | {g(a, 'added_p50_us')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
