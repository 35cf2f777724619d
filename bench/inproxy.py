#!/usr/bin/env python3
"""Where a request's latency goes inside the proxy, strangler against nginx,
measured in the kernel with bpftrace while oha sends a fixed rate.

run.py's `latency` scenario times requests end to end, from oha.  On a shared
two-CPU VM that figure moves by 10-30% between rounds, because the load
generator and the origin share the other CPU and the host preempts both.
This tool times only what the proxy does, so the two proxies can be compared
without the rest of the machine in the number:

  residence  a client request read (recvfrom returns) -> its answer written
             (sendto/writev/write entered on the same socket): the proxy's own
             work plus the upstream round trip, which both proxies share.
  wake       the proxy thread woken (sched_wakeup) -> on the CPU (sched_switch):
             how long the kernel takes to run it once a socket has data.
  dispatch   epoll_wait returns events -> the first recvfrom/accept4 after it:
             the event loop's own cost before it reads.

Each proxy is measured alone, the other idle, in turn, `--rounds` times; the
percentiles are over every event of every round.

    python3 bench/inproxy.py                 # 2,000 req/s, 3 rounds of 10 s each
    python3 bench/inproxy.py --rate 2000 --rounds 5 --duration 10

Needs root, bpftrace (`apt-get install bpftrace`), nginx and oha (bench/setup.sh).
Proxies on CPU 1, origin and oha on CPU 0, as run.py pins them.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from trio import PROXIES, Trio, oha, percentiles  # noqa: E402

PORTS = (18110, 18111, 18112)  # origin, nginx, strangler

# $1: the proxy's pid.  Keys are microseconds; the maps are printed at SIGINT.
PROGRAM = r"""
tracepoint:syscalls:sys_exit_accept4 /pid == $1 && args->ret >= 0/ { @client[args->ret] = 1; }
tracepoint:syscalls:sys_enter_close /pid == $1/ { delete(@client[args->fd]); delete(@start[args->fd]); }
tracepoint:syscalls:sys_exit_epoll_wait /pid == $1 && args->ret > 0/ { @ew[tid] = nsecs; }
tracepoint:syscalls:sys_enter_recvfrom, tracepoint:syscalls:sys_enter_read, tracepoint:syscalls:sys_enter_accept4
  /pid == $1/ {
  @fd[tid] = args->fd;
  if (@ew[tid]) { @dispatch[(nsecs - @ew[tid]) / 1000] = count(); delete(@ew[tid]); } }
tracepoint:syscalls:sys_exit_recvfrom, tracepoint:syscalls:sys_exit_read
  /pid == $1 && args->ret > 0 && @client[@fd[tid]] && !@start[@fd[tid]]/ { @start[@fd[tid]] = nsecs; }
tracepoint:syscalls:sys_enter_sendto, tracepoint:syscalls:sys_enter_writev, tracepoint:syscalls:sys_enter_write
  /pid == $1 && @start[args->fd]/ {
  @residence[(nsecs - @start[args->fd]) / 1000] = count(); delete(@start[args->fd]); }
tracepoint:sched:sched_wakeup /args->pid == $1/ { @woken = nsecs; }
tracepoint:sched:sched_switch /args->next_pid == $1 && @woken/ {
  @wake[(nsecs - @woken) / 1000] = count(); @woken = 0; }
END { clear(@client); clear(@start); clear(@fd); clear(@ew); }
"""

METRICS = ("residence", "wake", "dispatch")


def trace(pid, port, args, rundir):
    """One round: bpftrace on `pid` while oha loads `port`; {metric: {us: count}} and oha's percentiles."""
    prog = os.path.join(rundir, "inproxy.bt")
    with open(prog, "w") as f:
        f.write(PROGRAM)
    bt = subprocess.Popen(["bpftrace", prog, str(pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    time.sleep(args.attach)  # bpftrace attaches its probes before the load starts
    if bt.poll() is not None:
        raise SystemExit(f"bpftrace exited: {bt.stderr.read().strip()[-500:]}")
    pct = percentiles(oha(port, args.rate, args.conns, args.duration), args.duration)
    bt.send_signal(signal.SIGINT)
    try:
        out, err = bt.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        bt.kill()
        bt.communicate()
        raise SystemExit("bpftrace did not print its maps within 60 s of SIGINT; it was killed (rerun)")
    hists = {m: {} for m in METRICS}
    for m, us, n in re.findall(r"^@(\w+)\[(\d+)\]: (\d+)$", out, re.M):
        if m in hists:
            hists[m][int(us)] = hists[m].get(int(us), 0) + int(n)
    if not hists["residence"]:
        raise SystemExit(f"bpftrace saw no requests (stderr: {err.strip()[-500:]})")
    return hists, pct


def percentile(hist, q):
    total = sum(hist.values())
    seen = 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= q * total:
            return us
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--attach", type=float, default=3.0, help="seconds given to bpftrace to attach")
    ap.add_argument("--strangler-bin", default=os.path.join(HERE, "..", "target", "release", "strangler"))
    args = ap.parse_args()
    for tool in ("bpftrace", "nginx", "oha", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (see the docstring)")
    if os.geteuid() != 0:
        raise SystemExit("bpftrace needs root")
    with Trio(PORTS, args.strangler_bin, single_nginx=True) as trio:  # the worker is the pid traced
        proxies = {name: (trio.pids[name], trio.ports[name]) for name in PROXIES}
        hists = {p: {m: {} for m in METRICS} for p in proxies}
        e2e = {p: [] for p in proxies}
        for rnd in range(args.rounds):
            for name in (list(proxies) if rnd % 2 == 0 else list(proxies)[::-1]):
                pid, port = proxies[name]
                h, pct = trace(pid, port, args, trio.rundir)
                for m in METRICS:
                    for us, n in h[m].items():
                        hists[name][m][us] = hists[name][m].get(us, 0) + n
                e2e[name].append(pct)
                print(f"round {rnd + 1} {name:9s} oha p50 {pct['p50']:.3f} ms  p99 {pct['p99']:.3f} ms",
                      flush=True)
        print(f"\nin-proxy time, us (GET /small, {args.rate} req/s, {args.conns} connections, "
              f"{args.rounds} x {args.duration} s each)")
        print(f"{'metric':10s} {'proxy':10s} {'events':>8s} {'p50':>6s} {'p90':>6s} {'p99':>6s} {'p99.9':>6s}")
        for m in METRICS:
            row = {}
            for name in proxies:
                h = hists[name][m]
                row[name] = [percentile(h, q) for q in (0.5, 0.9, 0.99, 0.999)]
                print(f"{m:10s} {name:10s} {sum(h.values()):>8,} " + " ".join(f"{v:>6}" for v in row[name]))
            n, s = row["nginx"], row["strangler"]
            print(f"{m:10s} {'s/n':10s} {'':>8s} " + " ".join(
                f"{(b / a if a else float('nan')):>5.2f}x" for a, b in zip(n, s)))
        print("\nend to end (oha), per round: strangler p99 / nginx p99 = "
              + ", ".join(f"{s['p99'] / n['p99']:.2f}x" for n, s in zip(e2e["nginx"], e2e["strangler"])))


if __name__ == "__main__":
    sys.exit(main())
