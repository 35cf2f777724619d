#!/usr/bin/env python3
"""Conformance suite: strangler against real third-party software.

Starts three upstreams on 127.0.0.1 with ports chosen by the OS (httpbin
under gunicorn, a Node `http` server, a `websockets` echo server), writes a
strangler config routing `/node/**` and `/ws/**` to the last two and
everything else to httpbin, runs the proxy, and drives it with curl, h2load,
headless Chromium, the `websockets` client, the `h2` package and raw sockets.
Each check prints `PASS name`, `FAIL name: reason` or `SKIP name: reason`;
then a summary. Exit 1 if any check failed.

    python3 tests/conformance/suite.py --strangler target/debug/strangler
    python3 tests/conformance/suite.py --direct     # the same checks against the upstreams alone
    python3 tests/conformance/suite.py --check-deps # exit 2 if a tool or package is missing

`--direct` runs every check that makes sense without the proxy straight
against its upstream: a check that fails through the proxy but passes direct
is a proxy failure, not a suite bug. Install everything with
tests/conformance/setup.sh (Debian, as root).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness
from harness import CHECKS, World, find_chromium, report, run_check

PY_MODULES = ["httpbin", "gunicorn", "h2", "hpack", "websockets"]
TOOLS = ["curl", "h2load", "node"]


def missing_deps() -> list[str]:
    missing = [f"python module {m}" for m in PY_MODULES if importlib.util.find_spec(m) is None]
    missing += [f"{t} (not on PATH)" for t in TOOLS if shutil.which(t) is None]
    if find_chromium() is None:
        missing.append("chromium (not on PATH)")
    if shutil.which("curl"):
        features = subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout
        if "HTTP2" not in features:
            missing.append("curl with HTTP2 support")
    return missing


def load_checks() -> None:
    # Importing registers; the order here is the order they run in (abuse last).
    import checks_bodies  # noqa: F401
    import checks_clients  # noqa: F401
    import checks_forwarding  # noqa: F401
    import checks_h2  # noqa: F401

    order = {"checks_forwarding": 0, "checks_bodies": 1, "checks_clients": 2, "checks_h2": 3}
    CHECKS.sort(key=lambda c: order.get(c.fn.__module__, 9))


def start_world(args, tmp: Path, services: list) -> World:
    node, node_port = harness.start_node(tmp)
    services.append(node)
    ws, ws_port = harness.start_ws(tmp)
    services.append(ws)
    httpbin, httpbin_port = harness.start_httpbin(tmp)
    services.append(httpbin)
    world = World(direct=args.direct, tmp=tmp, upstreams={"node": node_port, "ws": ws_port, "httpbin": httpbin_port})
    if not args.direct:
        proxy, world.proxy_port = harness.start_proxy(args.strangler, tmp, world.upstreams)
        services.append(proxy)
        world.proxy = proxy
    return world


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--strangler", metavar="PATH", help="the strangler binary under test")
    mode.add_argument("--direct", action="store_true", help="skip the proxy: run the checks against the upstreams")
    mode.add_argument("--check-deps", action="store_true", help="exit 0 if every tool and package is there, else 2")
    mode.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--only", metavar="NAMES", help="comma-separated substrings: run only the checks matching one")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs) even if all pass")
    args = ap.parse_args()

    if args.check_deps:
        missing = missing_deps()
        for m in missing:
            print(f"missing: {m}")
        return 2 if missing else 0

    load_checks()
    if args.list:
        for c in CHECKS:
            print(f"{c.name}{'' if c.direct else '  (proxy only)'}\n    {c.doc.splitlines()[0]}")
        return 0

    missing = missing_deps()
    if missing:
        print("conformance: missing " + ", ".join(missing) + "; run tests/conformance/setup.sh", flush=True)
        return 2

    checks = CHECKS
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        checks = [c for c in CHECKS if any(w in c.name for w in wanted)]

    # SIGTERM unwinds like Ctrl-C, so the `finally` below stops the services.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="strangler-conformance-"))
    services: list[harness.Service] = []
    started = time.monotonic()
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    try:
        try:
            world = start_world(args, tmp, services)
        except Exception as e:
            print(f"FAIL startup: {harness.one_line(e)}", flush=True)
            print(str(e), flush=True)
            counts["FAIL"] += 1
            return 1
        where = "DIRECT (no proxy)" if args.direct else f"strangler on 127.0.0.1:{world.proxy_port}"
        print(
            f"conformance: {len(checks)} checks against {where}; upstreams {world.upstreams}; logs in {tmp}", flush=True
        )
        for c in checks:
            if args.direct and not c.direct:
                outcome = harness.Outcome("SKIP", "proxy only")
            else:
                outcome = run_check(c, world)
            counts[outcome.status] += 1
            report(c, outcome)
        if world.proxy is not None and not world.proxy.alive():
            print(f"conformance: the proxy exited (code {world.proxy.proc.returncode}):\n{world.proxy.tail()}")
    finally:
        for s in reversed(services):
            s.stop()
        if counts["FAIL"] == 0 and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"conformance: logs kept in {tmp}", flush=True)
        print(f"conformance: took {time.monotonic() - started:.0f} s", flush=True)
        print(f"conformance: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
