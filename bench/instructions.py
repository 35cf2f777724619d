#!/usr/bin/env python3
"""User-space instructions per proxied request, strangler against nginx, under
callgrind: a count that does not move with the machine's load, unlike req/s
on a shared VM. It sees only the proxy's own code (the kernel's share of a
request, the same two sendto/recvfrom pairs for both, is not counted).

For each proxy: start it under `valgrind --tool=callgrind`, send N1 requests
(oha, 64 connections, keep-alive), stop it; again with N2; the difference of
the two totals over N2 - N1 is the cost of one request, start-up and shutdown
cancelling out.

    python3 bench/instructions.py                  # GET /small through each
    python3 bench/instructions.py --n1 2000 --n2 6000 --strangler-bin target/release/strangler

Needs valgrind, nginx, oha (bench/setup.sh installs nginx and oha;
`apt-get install valgrind`). Takes about a minute.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"
ORIGIN, NGINX, STRANGLER = 18100, 18101, 18102


def render(template, out, subs):
    text = open(os.path.join(HERE, "conf", template)).read()
    for k, v in subs.items():
        text = text.replace("{" + k + "}", str(v))
    with open(out, "w") as f:
        f.write(text)
    return out


def subs(port, rundir, origin=ORIGIN):
    """The template values for a proxy listening on `port` in front of the origin on `origin`."""
    return {"listen": f"{HOST}:{port}", "listen_host": HOST, "listen_port": port,
            "backend": f"{HOST}:{origin}", "backend_host": HOST, "backend_port": origin,
            "rundir": rundir}


def wait_ready(port, path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port} within {timeout} s")


def total_ir(out_file):
    for line in open(out_file):
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out_file}")


def count(name, argv, port, path, n, rundir):
    out = os.path.join(rundir, f"{name}.{n}.callgrind")
    log = open(os.path.join(rundir, f"{name}.{n}.log"), "w")
    env = dict(os.environ, RUST_LOG="warn")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + argv,
                         stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(port, path)
        subprocess.run(["oha", "--no-tui", "-n", str(n), "-c", "64", f"http://{HOST}:{port}{path}"],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    return total_ir(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n1", type=int, default=2000)
    ap.add_argument("--n2", type=int, default=10000)
    ap.add_argument("--path", default="/small")
    ap.add_argument("--routes", type=int, default=0,
                    help="give strangler this many routes, as run.py's `routes` scenario does "
                         "(pair with --path " + "/api/v1/svc7777/items/42, the routed request)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the callgrind files (printed) for callgrind_annotate")
    ap.add_argument("--strangler-bin", default=os.path.join(HERE, "..", "target", "release", "strangler"))
    args = ap.parse_args()
    for tool in ("valgrind", "nginx", "oha"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found (see the docstring)")
    rundir = tempfile.mkdtemp(prefix="strangler-instr-")
    os.makedirs(os.path.join(rundir, "www"), exist_ok=True)
    origin = subprocess.Popen(["nginx", "-p", rundir, "-e", os.path.join(rundir, "origin.error.log"), "-c",
                               render("backend-nginx.conf", os.path.join(rundir, "origin.conf"),
                                      subs(ORIGIN, rundir))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(ORIGIN, "/small")
        # nginx as the proxy: one worker, in the foreground, so callgrind sees the process serving.
        nginx_conf = render("nginx.conf", os.path.join(rundir, "nginx.conf"), subs(NGINX, rundir))
        text = open(nginx_conf).read().replace("worker_processes 1;", "worker_processes 1; master_process off;")
        open(nginx_conf, "w").write(text)
        strangler_conf = render("strangler.toml.tmpl", os.path.join(rundir, "strangler.toml"),
                                subs(STRANGLER, rundir))
        if args.routes:
            sys.path.insert(0, HERE)
            from run import gen_routes
            with open(strangler_conf, "a") as f:
                f.write("\n" + gen_routes(args.routes))
        proxies = {
            "nginx": (["nginx", "-p", rundir, "-e", os.path.join(rundir, "nginx.error.log"), "-c", nginx_conf],
                      NGINX),
            "strangler": ([args.strangler_bin, "run", "--config", strangler_conf], STRANGLER),
        }
        if args.routes:
            # nginx has no such routes: strangler alone, to compare route counts
            del proxies["nginx"]
        per = {}
        for name, (argv, port) in proxies.items():
            a = count(name, argv, port, args.path, args.n1, rundir)
            b = count(name, argv, port, args.path, args.n2, rundir)
            per[name] = (b - a) / (args.n2 - args.n1)
            print(f"{name:10s} user-space instructions per request: {per[name]:,.0f}", flush=True)
        if "nginx" in per:
            print(f"strangler/nginx: {per['strangler'] / per['nginx']:.2f}x   "
                  f"(GET {args.path}, {args.n2 - args.n1} requests counted, callgrind)")
        else:
            print(f"(strangler with {args.routes} routes, GET {args.path}, "
                  f"{args.n2 - args.n1} requests counted, callgrind)")
    finally:
        origin.send_signal(signal.SIGTERM)
        origin.wait(timeout=10)
    if args.keep:
        print(f"callgrind files kept in {rundir}")
    else:
        shutil.rmtree(rundir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
