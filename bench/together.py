#!/usr/bin/env python3
"""strangler's p99 against nginx's, both loaded at the same moment: a paired
measurement that the machine's drift cannot tilt.

run.py's `latency` scenario measures each proxy alone, one after the other.
On a shared two-CPU VM the p99 of a 10 s run moves by 10-30% between runs,
seconds apart, for reasons outside both proxies (the host preempts the VM,
the load generator and the origin share the other CPU), so its ratio needs
many rounds to say little.  Here one oha per proxy runs at the same time,
each at the fixed rate against its own proxy: both proxies see the same
host, the same stalls, the same origin.  What is left between them in a
round is the proxies' own difference, plus each one sometimes waiting for
the other on the shared proxy CPU, which is the same for both on average
(and weighs against the proxy that spends less CPU per request).

Per round it prints both p99s and their ratio; at the end the median ratio,
the geometric mean with a bootstrap 95% interval, and how many rounds
strangler's p99 was at or below nginx's.  `--apart` also measures each
proxy alone in every round (in alternating order), as run.py does, so one
run shows both designs' spread side by side.

    python3 bench/together.py                      # 2,000 req/s each, 30 rounds of 5 s
    python3 bench/together.py --rounds 60 --apart

Proxies on CPU 1, origin and both oha on CPU 0, as run.py pins them.
Needs nginx and oha (bench/setup.sh) and a release build of strangler.
"""
import argparse
import datetime
import json
import math
import os
import random
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from trio import PROXIES, Trio, oha, percentiles  # noqa: E402

PORTS = (18120, 18121, 18122)  # origin, nginx, strangler


def together(trio, args, first):
    """Both proxies loaded at once; `first` is whose oha starts first."""
    order = [first] + [p for p in PROXIES if p != first]
    running = {p: oha(trio.ports[p], args.rate, args.conns, args.duration) for p in order}
    return {p: percentiles(running[p], args.duration) for p in PROXIES}


def apart(trio, args, first):
    """Each proxy alone, in turn, as run.py's latency scenario measures them."""
    out = {}
    for p in [first] + [p for p in PROXIES if p != first]:
        time.sleep(args.pause)
        out[p] = percentiles(oha(trio.ports[p], args.rate, args.conns, args.duration), args.duration)
    return out


def interval(ratios, stat, n=10000, seed=1):
    """Bootstrap 95% interval of `stat` over the per-round ratios, on their
    logarithms (a ratio's spread is symmetric there); seeded, so a report
    can be recomputed from its JSON."""
    rng = random.Random(seed)
    logs = [math.log(r) for r in ratios]
    draws = sorted(stat([rng.choice(logs) for _ in logs]) for _ in range(n))
    return math.exp(draws[int(0.025 * n)]), math.exp(draws[int(0.975 * n) - 1])


def summary(rounds, design, key="p99"):
    ratios = [r[design]["strangler"][key] / r[design]["nginx"][key] for r in rounds]
    geo = math.exp(statistics.mean(math.log(x) for x in ratios))
    lo, hi = interval(ratios, statistics.mean)
    return {"median": statistics.median(ratios), "geomean": geo, "ci95": [lo, hi],
            "at_or_below": sum(x <= 1.0 for x in ratios), "rounds": len(ratios),
            "min": min(ratios), "max": max(ratios)}


def describe(name, s, key):
    return (f"{name:8s} strangler {key} / nginx {key}: median {s['median']:.3f}x, geometric mean "
            f"{s['geomean']:.3f}x (95% interval {s['ci95'][0]:.3f}x-{s['ci95'][1]:.3f}x), "
            f"strangler <= nginx in {s['at_or_below']} of {s['rounds']} rounds, "
            f"range {s['min']:.2f}x-{s['max']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000, help="req/s to each proxy (default 2000)")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--pause", type=float, default=0.5, help="seconds of idle between measurements")
    ap.add_argument("--apart", action="store_true", help="also measure each proxy alone every round")
    ap.add_argument("--strangler-bin", default=os.path.join(HERE, "..", "target", "release", "strangler"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the JSON report")
    args = ap.parse_args()
    for tool in ("nginx", "oha", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (bash bench/setup.sh installs nginx and oha)")
    os.sched_setaffinity(0, {0})  # this script stays off the proxies' CPU
    designs = ["together"] + (["apart"] if args.apart else [])
    rounds = []
    with Trio(PORTS, args.strangler_bin) as trio:
        for p in PROXIES:  # warm-up, not recorded: connection pools filled, code paged in
            percentiles(oha(trio.ports[p], args.rate, args.conns, 2), 2)
        for i in range(args.rounds):
            first = PROXIES[i % 2]
            r = {}
            for d in designs:
                time.sleep(args.pause)
                r[d] = (together if d == "together" else apart)(trio, args, first)
                bad = {p: v["errors"] for p, v in r[d].items() if v["errors"]}
                if bad:
                    raise SystemExit(f"round {i + 1} {d}: failed requests {bad}")
            rounds.append(r)
            print(f"r{i + 1:<3}" + "  ".join(
                f"{d}: nginx {r[d]['nginx']['p99']:.3f} strangler {r[d]['strangler']['p99']:.3f} ms "
                f"({r[d]['strangler']['p99'] / r[d]['nginx']['p99']:.2f}x)" for d in designs), flush=True)
    result = {d: {k: summary(rounds, d, k) for k in ("p50", "p99")} for d in designs}
    print(f"\n== p99 at {args.rate} req/s to each proxy, oha -c{args.conns} --latency-correction, GET /small, "
          f"{args.rounds} rounds of {args.duration} s")
    for d in designs:
        for k in ("p99", "p50"):
            print("  " + describe(d, result[d][k], k))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, datetime.datetime.now().strftime("together-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "rounds": rounds, "summary": result}, f,
                  indent=1)
    print(f"  report: {path}")


if __name__ == "__main__":
    sys.exit(main())
