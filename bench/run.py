#!/usr/bin/env python3
"""strangler vs nginx (and direct-to-origin) side by side, loopback only.  See bench/README.md.

Topology (2 cores):  CPU 0 = load generator (wrk/oha) + origin nginx + this script,
                     CPU 1 = the proxy under test (one worker/thread).
Every load run is bounded by -d/-z and by a subprocess timeout.  Only the
processes this script starts are ever signalled, by PID.

Exit codes: 0 ok; 1 a target died or returned wrong bodies during the run;
2 bad usage / missing tool / missing strangler binary; 3 a target did not come up.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from trio import oha_url, percentiles  # noqa: E402

REPO = os.path.dirname(HERE)
HOST = "127.0.0.1"
BACKEND_PORT = 18000
PORTS = {"direct": BACKEND_PORT, "nginx": 18001, "haproxy": 18002, "caddy": 18003,
         "strangler": 18004, "strangler-r10": 18005, "strangler-r10k": 18006, "strangler-log": 18007,
         "strangler-compose": 18008, "legacy-stub": 18009, "strangler-shadow": 18010}
TARGET_ORDER = ["direct", "nginx", "haproxy", "caddy", "strangler", "strangler-log"]
ROUTE_TARGETS = ["strangler-r10", "strangler-r10k"]
LOAD_CPU, PROXY_CPU = "0", "1"
KIB, MIB = 1024, 1024 * 1024
# files the origin serves (written at setup, random bytes)
BODY_SIZES = {"/1k": KIB, "/64k": 64 * KIB, "/1m": MIB, "/10m": 10 * MIB, "/100m": 100 * MIB}
GROW_SIZES = ["/1k", "/1m", "/10m", "/100m"]   # bodygrow, in this order (growing)
CHECK_EARLY = ["/1k", "/64k", "/1m"]            # verified byte for byte before measuring
CHECK_LATE = ["/10m", "/100m"]                  # verified after the run (keeps bodygrow's curve clean)

# The routes scenario: this request must go through the router's real work in both
# configs (same prefix as thousands of routes in the big one) and is rewritten to /small.
HIT_SVC = 7777
ROUTES_PATH = f"/api/v1/svc{HIT_SVC}/items/42"

# The compose scenarios (SPEC 2.5): strangler-compose answers a composed route of three
# independent legs (no leg reads another) and a plain route to the same origin.
#   compose-latency: legs on legacy-stub's /delay/{ms} (JSON echo after a fixed delay), at a fixed rate;
#   compose-rps:     legs on the origin nginx's /json/{leg}/{id} (a small JSON object, no delay).
COMPOSE = "strangler-compose"
STUB = "legacy-stub"
COMPOSE_LEGS = ("order", "customer", "stock")
COMPOSE_ID = "42"
COMPOSE_SCENARIOS = ("compose-latency", "compose-rps")

# The shadow scenario (SPEC 2.4): strangler-shadow has two routes to the origin nginx, both rewritten to
# /delay/{ms}, which the origin answers at once (conf/backend-nginx.conf).  One of them is shadowed, 100%,
# to upstream `slow` = legacy-stub's test backend, which honours /delay/{ms}: every copy is slow, the
# primary is not.  Mirrored copies keep the upstream path (after rewrite), hence the shared /delay/ path.
SHADOW = "strangler-shadow"
SHADOW_ADMIN_PORT = 18011
# every scenario with several variants (label -> (target, path)) on one or two instances
VARIANT_SCENARIOS = COMPOSE_SCENARIOS + ("shadow",)

# name -> (tool, path, connections, extra wrk args, headline metric, higher_is_better)
SCENARIOS = {
    "small":    ("wrk", "/small", 64, [], "rps", True),
    "latency":  ("oha", "/small", 16, [], "p99_ms", False),
    "body64k":  ("wrk", "/64k", 16, [], "rps", True),
    "body1m":   ("wrk", "/1m", 16, [], "rps", True),
    "churn":    ("wrk", "/small", 16, ["-H", "Connection: close"], "rps", True),
    "bodygrow": ("wrk", None, 4, [], "rss_kb", False),       # one run per size in GROW_SIZES
    "routes":   ("wrk", ROUTES_PATH, 64, [], "rps", True),   # strangler-r10 vs strangler-r10k only
    # direct / plain / composite: paths from compose_variants(); oha at --compose-rate
    "compose-latency": ("oha", None, 16, [], "p50_ms", False),
    "compose-rps":     ("wrk", None, 64, [], "rps", True),
    # plain / shadowed: paths from shadow_variants(); oha at --shadow-rate, HWM reset before each
    "shadow":          ("oha", None, 16, [], "p99_ms", False),
}
SCENARIO_DOC = {
    "small":    "wrk -t1 -c64, keepalive, GET /small (6 B body): req/s",
    "latency":  "oha -q {rate} -c16 --latency-correction, GET /small: latency ms",
    "body64k":  "wrk -t1 -c16, keepalive, GET /64k: req/s and MiB/s",
    "body1m":   "wrk -t1 -c16, keepalive, GET /1m: req/s and MiB/s",
    "churn":    "wrk -t1 -c16, 'Connection: close' (new TCP conn per request): req/s",
    "bodygrow": "wrk -t1 -c4 -d{gd}s per size, 1k -> 1m -> 10m -> 100m in turn: proxy RSS after each size, "
                "peak RSS (VmHWM, reset before each size) during it",
    "routes":   "wrk -t1 -c64, keepalive, GET " + ROUTES_PATH + " (routed, rewritten to /small): "
                "{small} routes vs {big} routes, req/s",
    "compose-latency": "oha -q {crate} -c16 --latency-correction; direct = legacy-stub GET /delay/{delay}, "
                       "plain = strangler-compose GET /plain/delay/{delay} (one call), composite = "
                       "GET /compose/delay/{delay} (3 independent legs, each /delay/{delay}): latency ms",
    "compose-rps":     "wrk -t1 -c64, keepalive; direct = origin GET /json/order/42, plain = strangler-compose "
                       "GET /plain/json/42 (one call), composite = GET /compose/json/42 (3 independent legs, "
                       "/json/{{order,customer,stock}}/42, merged): req/s",
    "shadow":          "oha -q {srate} -c16 --latency-correction; plain = strangler-shadow GET /noshadow/delay/{sdelay}, "
                       "shadowed = GET /shadow/delay/{sdelay} with shadow = {{ to = \"slow\", percent = 100 }}; both "
                       "answered at once by the origin, every copy by legacy-stub after {sdelay} ms: latency ms, "
                       "strangler RSS peak (VmHWM reset before each)",
}

STARTED = []  # Popen objects we own; the only things we ever signal
OURS = set()  # pids of the bench (this script, origin, proxies): excluded from "other%"


class StartError(Exception):
    pass


# ---------------------------------------------------------------- processes
def render_text(template_path, subs):
    text = open(template_path).read()
    for k, v in subs.items():
        text = text.replace("{" + k + "}", str(v))
    return text


def render(template_path, out_path, subs):
    with open(out_path, "w") as f:
        f.write(render_text(template_path, subs))
    return out_path


def port_in_use(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def start(name, argv, cpu, rundir, env=None):
    log = open(os.path.join(rundir, name + ".log"), "w")
    p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    STARTED.append(p)
    return p


def log_tail(rundir, name, n=15):
    try:
        lines = open(os.path.join(rundir, name + ".log"), errors="replace").read().splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join("  | " + l for l in lines[-n:]) or "  (log is empty)"


def get(port, path, timeout=5):
    with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=timeout) as r:
        return r.status, r.read()


def wait_ready(name, port, proc, rundir, timeout, path="/small"):
    """Until GET path answers 200 'hello\\n' (the origin's /small), or raise StartError."""
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        if proc.poll() is not None:
            raise StartError(f"{name} exited during start-up (rc={proc.returncode}); last lines of "
                             f"{rundir}/{name}.log:\n{log_tail(rundir, name)}")
        try:
            status, body = get(port, path, timeout=2)
            if status == 200 and body == b"hello\n":
                return
            last = f"answered {status} {body[:60]!r}"
        except urllib.error.HTTPError as e:
            last = f"answered {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise StartError(f"{name} did not answer GET {path} with 200 'hello\\n' on :{port} within {timeout}s "
                     f"(last: {last}); last lines of {rundir}/{name}.log:\n{log_tail(rundir, name)}")


def check_body(port, path, digest, size):
    """Stream the body, compare length and sha256 with the origin's file; return an error string or None."""
    h, n = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as r:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
    except OSError as e:
        return f":{port}{path}: {e}"
    if n != size or h.hexdigest() != digest:
        return f":{port}{path} returned {n} bytes (expected {size}), sha256 {'ok' if h.hexdigest() == digest else 'MISMATCH'}"
    return None


def stop_all():
    for p in reversed(STARTED):
        if p.poll() is None:
            p.terminate()  # SIGTERM to this PID only (taskset execs, so it is the server itself)
    for p in reversed(STARTED):
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    STARTED.clear()


def proc_tree(pid):
    """pid plus all descendants (nginx master -> worker)."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime + stime
        except OSError:
            pass
    return total


def tree_mem_kb(pids, field):
    total = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def reset_hwm(pids):
    """Reset VmHWM to the current VmRSS (Linux >= 4.0, needs ptrace rights: we are the parent / root)."""
    ok = True
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def user_proc_ticks():
    """{pid: utime+stime} of every userland process (kernel threads, children of kthreadd, left out)."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                f = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(f[1]) == 2 or d == "2":
                continue
            out[int(d)] = int(f[11]) + int(f[12])
    return out


def other_ticks(before, after):
    """CPU ticks burnt during a measurement by processes that are not the bench's (a shared machine:
    someone's cargo build).  wrk/oha have exited by the second snapshot, so they do not count."""
    return sum(t - before.get(p, 0) for p, t in after.items() if p not in OURS)


def cpu_stat():
    """{cpuN: (busy, steal, total)} jiffies from /proc/stat."""
    out = {}
    for line in open("/proc/stat"):
        if re.match(r"cpu\d", line):
            name, *v = line.split()
            v = list(map(int, v))
            total = sum(v[:8])
            out[name] = (total - v[3] - v[4] - v[7], v[7], total)
    return out


# ---------------------------------------------------------------- load tools
UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4}


def run_wrk(url, conns, duration, extra, timeout_s=5):
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
            "--timeout", f"{timeout_s}s"] + extra + [url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout_s + 30)
    out = r.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise RuntimeError(f"wrk failed (rc={r.returncode}): {(r.stderr + out).strip()[-500:]}")
    t = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?)B", out)
    s = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = (sum(map(int, s.groups())) if s else 0) + (int(n.group(1)) if n else 0)
    return {"rps": float(m.group(1)),
            "mib_s": float(t.group(1)) * UNITS[t.group(2)] / MIB if t else None,
            "errors": errors}, out


def run_oha(url, conns, duration, rate):
    p = percentiles(oha_url(url, rate, conns, duration), duration)
    return {"rps": p["rps"], "p50_ms": p["p50"], "p99_ms": p["p99"], "p99.9_ms": p["p99.9"],
            "errors": p["errors"]}


def measure(tool, url, conns, extra, duration, watch_pids, args, wrk_timeout=5, rate=None):
    o0, c0, t0, w0 = user_proc_ticks(), cpu_stat(), tree_cpu_ticks(watch_pids), time.time()
    if tool == "wrk":
        res, raw = run_wrk(url, conns, duration, extra, wrk_timeout)
    else:
        res, raw = run_oha(url, conns, duration, rate or args.rate), None
    c1, t1, w1, o1 = cpu_stat(), tree_cpu_ticks(watch_pids), time.time(), user_proc_ticks()
    res["target_cpu_pct"] = 100.0 * (t1 - t0) / os.sysconf("SC_CLK_TCK") / (w1 - w0)
    res["other_cpu_pct"] = 100.0 * other_ticks(o0, o1) / os.sysconf("SC_CLK_TCK") / (w1 - w0)
    # CPU cost per request stays comparable even when the load side, not the proxy, is the limit
    res["cpu_us_per_req"] = res["target_cpu_pct"] / 100.0 / res["rps"] * 1e6 if res["rps"] else None
    for cpu in ("cpu0", "cpu1"):
        dt = (c1[cpu][2] - c0[cpu][2]) or 1
        res[cpu + "_busy_pct"] = 100.0 * (c1[cpu][0] - c0[cpu][0]) / dt
        res[cpu + "_steal_pct"] = 100.0 * (c1[cpu][1] - c0[cpu][1]) / dt
    return res, raw


# ---------------------------------------------------------------- strangler configs
def route_block(name, upstream="origin", **kv):
    lines = ["[[routes]]", f'name = "{name}"']
    for k, v in kv.items():
        if isinstance(v, list):
            lines.append(f"{k} = [" + ", ".join(f'"{x}"' for x in v) + "]")
        elif isinstance(v, dict):
            lines.append(f"{k} = {{ " + ", ".join(f'"{a}" = "{b}"' for a, b in v.items()) + " }")
        else:
            lines.append(f'{k} = "{v}"')
    lines.append(f'upstream = "{upstream}"')
    return "\n".join(lines) + "\n"


def filler_route(i):
    """Route number i of the realistic mix (kinds cycle over i % 10); svc number i is never HIT_SVC."""
    k = i % 10
    if k == 0:
        return route_block(f"items-{i}", path=f"/api/v1/svc{i}/items/{{id}}", rewrite="/items/{id}")
    if k == 1:
        return route_block(f"reviews-{i}", path=f"/api/v1/svc{i}/items/{{id}}/reviews/{{rid}}")
    if k == 2:
        return route_block(f"orders-{i}", path=f"/api/v1/svc{i}/orders/{{id}}", methods=["POST", "PUT", "PATCH"])
    if k == 3:
        return route_block(f"static-{i}", prefix=f"/static/{i}", strip_prefix=f"/static/{i}")
    if k == 4:
        return route_block(f"v2-{i}", path=f"/api/v2/svc{i}/{{*rest}}", rewrite="/v2/{rest}")
    if k == 5:
        return route_block(f"list-{i}", path=f"/api/v1/svc{i}/items", methods=["GET", "HEAD"])
    if k == 6:
        return route_block(f"tenant-{i}", path=f"/api/v1/svc{i}/items/{{id}}", headers={"x-tenant": f"t{i}"})
    if k == 7:
        return route_block(f"user-items-{i}", path=f"/api/v1/svc{i}/users/{{uid}}/items/{{id}}")
    if k == 8:
        return route_block(f"legacy-{i}", prefix=f"/api/v1/svc{i}/legacy", host="*.example.com")
    return route_block(f"assets-{i}", path=f"/assets/{i}/{{*file}}", rewrite="/a/{file}")


def hit_routes():
    """In both configs: a canary route with a header condition the bench request does not meet
    (so the router evaluates conditions and moves on), the route that takes it, and a literal one.
    benches/router.rs builds the same table."""
    return [route_block(f"svc{HIT_SVC}-canary", path=f"/api/v1/svc{HIT_SVC}/items/{{id}}",
                        headers={"x-canary": "1"}, rewrite="/canary/{id}"),
            route_block(f"svc{HIT_SVC}-items", path=f"/api/v1/svc{HIT_SVC}/items/{{id}}",
                        methods=["GET", "HEAD"], rewrite="/small"),
            route_block(f"svc{HIT_SVC}-list", path=f"/api/v1/svc{HIT_SVC}/items", methods=["GET", "HEAD"])]


def gen_routes(n):
    """n routes: n-4 fillers, the 3 hit routes in the middle of the file, a /api/v1 catch-all last."""
    assert n >= 5
    fill = [i for i in range(n) if i != HIT_SVC][: n - 4]
    mid = len(fill) // 2
    parts = [filler_route(i) for i in fill[:mid]] + hit_routes() + [filler_route(i) for i in fill[mid:]]
    parts.append(route_block("api-v1-catchall", prefix="/api/v1"))
    assert len(parts) == n
    return "\n".join(parts)


def strangler_config(rundir, name, port, routes=0, extra="", admin=None):
    text = render_text(os.path.join(HERE, "conf", "strangler.toml.tmpl"), subs(port, rundir))
    if admin:
        text = text.replace("[server]\n", f'[server]\nadmin = "{HOST}:{admin}"\n', 1)
    if routes:
        text += f"\n# {routes} generated routes (bench/run.py gen_routes)\n" + gen_routes(routes)
    text += extra
    # Configs sit in a directory of their own: strangler watches its config's
    # directory for reloads, and the logs written next to it (the access log
    # of strangler-log above all) would wake every strangler's watcher thread,
    # on the proxy core, on each write.
    confdir = os.path.join(rundir, "conf")
    os.makedirs(confdir, exist_ok=True)
    path = os.path.join(confdir, name + ".toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def compose_routes(with_delay):
    """strangler-compose's routes: for compose-rps, a plain route and a composite of three independent
    legs on the origin's /json/...; with_delay adds the same pair on legacy-stub's /delay/{ms}
    (compose-latency).  No leg reads another leg, so all three start at once."""
    def composite(name, path, upstream, leg_path):
        out = [f'[[routes]]\nname = "{name}"\npath = "{path}"\nmethods = ["GET"]\n\n'
               '[routes.compose]\nmerge = "nest"\n']
        for leg in COMPOSE_LEGS:
            out.append(f'\n[[routes.compose.legs]]\nname = "{leg}"\nupstream = "{upstream}"\n'
                       f'path = "{leg_path.replace("LEG", leg)}"\n')
        return "".join(out)

    parts = ["\n# compose-rps (bench/run.py compose_routes)\n",
             route_block("plain-json", path="/plain/json/{id}", methods=["GET"], rewrite="/json/order/{id}"),
             "\n", composite("compose-json", "/compose/json/{id}", "origin", "/json/LEG/{id}")]
    if with_delay:
        parts += ["\n# compose-latency\n[upstreams.stub]\n"
                  f'targets = ["http://{HOST}:{PORTS[STUB]}"]\n\n',
                  route_block("plain-delay", upstream="stub", path="/plain/delay/{ms}", methods=["GET"],
                              rewrite="/delay/{ms}"),
                  "\n", composite("compose-delay", "/compose/delay/{ms}", "stub", "/delay/{ms}")]
    return "".join(parts)


def compose_variants(sc, args):
    """[(label, target, path)] measured in a compose scenario: the origin alone, the plain route, the composite."""
    if sc == "compose-latency":
        ms = args.compose_delay
        return [("direct", STUB, f"/delay/{ms}"), ("plain", COMPOSE, f"/plain/delay/{ms}"),
                ("composite", COMPOSE, f"/compose/delay/{ms}")]
    return [("direct", "direct", f"/json/order/{COMPOSE_ID}"), ("plain", COMPOSE, f"/plain/json/{COMPOSE_ID}"),
            ("composite", COMPOSE, f"/compose/json/{COMPOSE_ID}")]


def shadow_routes(args):
    """strangler-shadow's admin listener, the slow shadow upstream and its two routes: both rewritten to
    /delay/{ms} on the origin (answered at once), one of them mirrored 100% to `slow` (legacy-stub's test
    backend, which waits ms before answering).  A copy keeps the primary's upstream path, so the shadow
    side sees /delay/{ms} and is slow while the primary is not."""
    return ("\n# shadow (bench/run.py shadow_routes)\n[upstreams.slow]\n"
            f'targets = ["http://{HOST}:{PORTS[STUB]}"]\n\n'
            + route_block("noshadow", path="/noshadow/delay/{ms}", methods=["GET"], rewrite="/delay/{ms}")
            + "\n" + route_block("shadowed", path="/shadow/delay/{ms}", methods=["GET"], rewrite="/delay/{ms}")
            + 'shadow = { to = "slow", percent = 100 }\n')


def shadow_variants(args):
    ms = args.shadow_delay
    return [("plain", SHADOW, f"/noshadow/delay/{ms}"), ("shadowed", SHADOW, f"/shadow/delay/{ms}")]


def variants(sc, args):
    return shadow_variants(args) if sc == "shadow" else compose_variants(sc, args)


def shadow_outcomes():
    """The shadowed route's outcome counts from GET /admin/shadow ({} if unavailable)."""
    try:
        _, _, _, v = get_json(SHADOW_ADMIN_PORT, "/admin/shadow")
        return dict(v["routes"]["shadowed"]["outcomes"])
    except (OSError, KeyError, TypeError):
        return {}


def check_shadow(args):
    """Before measuring: both routes answer the origin's JSON at once, and a copy of a shadowed request
    reaches the slow shadow and gets compared (the bodies differ: the stub echoes, so `mismatch`)."""
    _, _, _, want = get_json(BACKEND_PORT, f"/delay/{args.shadow_delay}")
    if not isinstance(want, dict):
        return f"origin GET /delay/{args.shadow_delay} did not answer a JSON object ({want!r:.80})"
    before = shadow_outcomes()
    for _, _, path in shadow_variants(args):
        t0 = time.time()
        status, ctype, _, v = get_json(PORTS[SHADOW], path)
        took = (time.time() - t0) * 1e3
        if status != 200 or v != want:
            return f"GET {path} gave {status} {ctype} {json.dumps(v)[:200] if v is not None else '(not JSON)'}"
        if took >= args.shadow_delay:
            return f"GET {path} took {took:.0f} ms: the client waited for the slow shadow?"
    deadline = time.time() + args.shadow_delay / 1e3 + 5
    while time.time() < deadline:
        after = shadow_outcomes()
        if sum(after.values()) > sum(before.values()):
            if after.get("error", 0) > before.get("error", 0):
                return f"the shadow copy failed: outcomes {after}"
            return None
        time.sleep(0.05)
    return f"no shadow outcome recorded within {args.shadow_delay / 1e3 + 5:.1f}s (GET /admin/shadow: {before})"


def get_json(port, path):
    """(status, content-type, x-strangler-partial, parsed JSON or None)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as r:
            body, ctype, partial, status = r.read(), r.headers.get("content-type"), \
                r.headers.get("x-strangler-partial"), r.status
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), None, None
    try:
        return status, ctype, partial, json.loads(body)
    except ValueError:
        return status, ctype, partial, None


def check_compose(scenarios, args):
    """Before measuring: the plain routes answer the origin's JSON, and each composite answers 200
    application/json with one object per leg, each the leg's own answer, and no failed leg.
    Returns an error string or None."""
    port = PORTS[COMPOSE]
    _, _, _, want = get_json(BACKEND_PORT, f"/json/order/{COMPOSE_ID}")
    checks = [(f"/plain/json/{COMPOSE_ID}", lambda v: v == want),
              (f"/compose/json/{COMPOSE_ID}", lambda v: v == {leg: want for leg in COMPOSE_LEGS})]
    if "compose-latency" in scenarios:
        delay = f"/delay/{args.compose_delay}"
        echo = lambda v: isinstance(v, dict) and v.get("path") == delay
        checks += [(f"/plain/delay/{args.compose_delay}", echo),
                   (f"/compose/delay/{args.compose_delay}",
                    lambda v: isinstance(v, dict) and sorted(v) == sorted(COMPOSE_LEGS)
                    and all(echo(v[leg]) for leg in COMPOSE_LEGS))]
    if not isinstance(want, dict):
        return f"origin GET /json/order/{COMPOSE_ID} did not answer a JSON object ({want!r:.80})"
    for path, ok in checks:
        try:
            status, ctype, partial, v = get_json(port, path)
        except OSError as e:
            return f"GET {path}: {e}"
        if status != 200 or partial or not (ctype or "").startswith("application/json") or not ok(v):
            return (f"GET {path} gave {status} content-type={ctype} x-strangler-partial={partial} "
                    f"body={json.dumps(v)[:200] if v is not None else '(not JSON)'}")
    return None


def subs(port, rundir):
    return {"listen": f"{HOST}:{port}", "listen_host": HOST, "listen_port": port,
            "backend": f"{HOST}:{BACKEND_PORT}", "backend_host": HOST, "backend_port": BACKEND_PORT,
            "rundir": rundir}


# ---------------------------------------------------------------- targets
def setup_targets(args, rundir, scenarios):
    """Start origin + proxies; return ({name: (port, popen)}, idle_rss_kb, digests)."""
    www = os.path.join(rundir, "www")
    os.makedirs(www, exist_ok=True)
    digests = {}
    for path, size in BODY_SIZES.items():
        if path in ("/10m", "/100m") and "bodygrow" not in scenarios:
            continue
        data = os.urandom(size)
        digests[path] = hashlib.sha256(data).hexdigest()
        with open(os.path.join(www, path.lstrip("/")), "wb") as f:
            f.write(data)
        del data
    conf = lambda name: os.path.join(HERE, "conf", name)
    want = args.targets

    started = {}
    p = start("backend", ["nginx", "-p", rundir, "-e", os.path.join(rundir, "backend.error.log"), "-c",
                          render(conf("backend-nginx.conf"), os.path.join(rundir, "backend.conf"),
                                 subs(BACKEND_PORT, rundir))], LOAD_CPU, rundir)
    wait_ready("origin", BACKEND_PORT, p, rundir, 15)
    started["direct"] = (BACKEND_PORT, p)

    if "nginx" in want:
        c = render(conf("nginx.conf"), os.path.join(rundir, "nginx.conf"), subs(PORTS["nginx"], rundir))
        started["nginx"] = (PORTS["nginx"], start("nginx", ["nginx", "-p", rundir, "-e",
                            os.path.join(rundir, "nginx.error.log"), "-c", c], PROXY_CPU, rundir))
    if "haproxy" in want:
        c = render(conf("haproxy.cfg"), os.path.join(rundir, "haproxy.cfg"), subs(PORTS["haproxy"], rundir))
        started["haproxy"] = (PORTS["haproxy"], start("haproxy", ["haproxy", "-db", "-f", c], PROXY_CPU, rundir))
    if "caddy" in want:
        c = render(conf("Caddyfile"), os.path.join(rundir, "Caddyfile"), subs(PORTS["caddy"], rundir))
        env = dict(os.environ, GOMAXPROCS="1", XDG_DATA_HOME=rundir, XDG_CONFIG_HOME=rundir, HOME=rundir)
        started["caddy"] = (PORTS["caddy"], start("caddy", ["caddy", "run", "--adapter", "caddyfile",
                            "--config", c], PROXY_CPU, rundir, env))

    if "compose-latency" in scenarios or "shadow" in scenarios:
        # the delayed JSON origin of compose-latency and the slow shadow: legacy-stub's test backend, on the load core
        started[STUB] = (PORTS[STUB], start(STUB, [args.stub_bin, "test", "--listen", f"{HOST}:{PORTS[STUB]}",
                                                   "--name", "bench"], LOAD_CPU, rundir))

    def strangler(name, routes=0, level=None, extra=(), routes_text=""):
        cfg = strangler_config(rundir, name, PORTS[name], routes, routes_text,
                               admin=SHADOW_ADMIN_PORT if name == SHADOW else None)
        env = dict(os.environ, RUST_LOG=level or args.rust_log)
        started[name] = (PORTS[name], start(name, [args.strangler_bin, "run", "--config", cfg, *extra],
                                            PROXY_CPU, rundir, env))

    if "strangler" in want:
        strangler("strangler")
    if "strangler-log" in want:
        # access log on: info level; stdout+stderr (the log) go to {rundir}/strangler-log.log
        strangler("strangler-log", level="info", extra=["--log-format", args.access_log_format])
    if "routes" in scenarios:
        strangler("strangler-r10", routes=args.routes_small)
        strangler("strangler-r10k", routes=args.routes_big)
    if any(sc in scenarios for sc in COMPOSE_SCENARIOS):
        strangler(COMPOSE, routes_text=compose_routes("compose-latency" in scenarios))
    if "shadow" in scenarios:
        strangler(SHADOW, routes_text=shadow_routes(args))

    slow = {"strangler-r10k": 90}  # 10k routes: parse + unreachable-route check at start-up
    for name, (port, p) in started.items():
        wait_ready(name, port, p, rundir, slow.get(name, args.start_timeout))
    # idle = after start-up and one GET /small, before any body has gone through
    time.sleep(0.5)
    trees = {t: proc_tree(p.pid) for t, (_, p) in started.items()}
    idle = {t: tree_mem_kb(trees[t], "VmRSS") for t in started}

    for name, (port, p) in started.items():
        if name == STUB:
            continue
        if name == COMPOSE:
            err = check_compose(scenarios, args)
            if err:
                raise StartError(f"{COMPOSE}: {err}\n{log_tail(rundir, name)}")
            continue
        if name == SHADOW:
            err = check_shadow(args)
            if err:
                raise StartError(f"{SHADOW}: {err}\n{log_tail(rundir, name)}")
            continue
        if name in ROUTE_TARGETS:
            # the routed request must come back from the origin's /small via the rewrite
            try:
                status, body = get(port, ROUTES_PATH)
            except OSError as e:
                status, body = str(e), b""
            if status != 200 or body != b"hello\n":
                raise StartError(f"{name}: GET {ROUTES_PATH} gave {status} {body[:60]!r}, expected 200 'hello\\n' "
                                 f"(route with rewrite = \"/small\" not taken?)\n{log_tail(rundir, name)}")
            continue
        for path in CHECK_EARLY:
            err = check_body(port, path, digests[path], BODY_SIZES[path])
            if err:
                raise StartError(f"{name}: body check failed: {err}")
    return started, trees, idle, digests


def versions(args):
    def v(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return ((r.stdout + r.stderr).strip().splitlines() or [""])[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    out = {"nginx": v(["nginx", "-v"]), "wrk": v(["wrk", "-v"]), "oha": v(["oha", "--version"]),
           "kernel": os.uname().release}
    if "haproxy" in args.targets:
        out["haproxy"] = v(["haproxy", "-v"])
    if "caddy" in args.targets:
        out["caddy"] = v(["caddy", "version"])
    if os.path.exists(args.strangler_bin):
        out["strangler_bin"] = args.strangler_bin
        out["strangler_bin_mtime"] = datetime.datetime.fromtimestamp(
            os.path.getmtime(args.strangler_bin)).isoformat(timespec="seconds")
        out["strangler_git"] = v(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
        dirty = v(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"])
        out["strangler_git_dirty"] = bool(dirty)
    return out


# ---------------------------------------------------------------- report
def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(vals, center):
    vals = [v for v in vals if v is not None]
    return 100.0 * (max(vals) - min(vals)) / center if vals and center else None


def summarize(runs):
    """{scenario: {target: medians}}, and for bodygrow {"bodygrow": {size: {target: ...}}}."""
    summary = {}
    for r in runs:
        key = (r["scenario"], r.get("size"), r["target"])
        summary.setdefault(key, []).append(r)
    out = {}
    for (sc, size, t), rows in summary.items():
        keys = [k for k in rows[0] if k not in ("scenario", "target", "round", "size", "measured", "path")]
        s = {k: med(rows, k) for k in keys}
        s["errors"] = sum(r["errors"] for r in rows)
        head = SCENARIOS[sc][4]
        if sc == "bodygrow":
            # memory: report the worst round, not the median
            s["rss_kb"] = max(r["rss_kb"] for r in rows)
            s["hwm_kb"] = max(r["hwm_kb"] for r in rows)
            s["spread_pct"] = spread([r["mib_s"] for r in rows], s["mib_s"])
            out.setdefault(sc, {}).setdefault(size, {})[t] = s
        else:
            if sc == "shadow":  # memory: the worst round; copies: totals over the rounds
                s["hwm_kb"] = max(r["hwm_kb"] for r in rows)
                s["rss_kb"] = max(r["rss_kb"] for r in rows)
                for k in ("match", "mismatch", "error", "skipped"):
                    s["shadow_" + k] = sum(r["shadow_" + k] for r in rows)
            s["spread_pct"] = spread([r[head] for r in rows], s[head])
            out.setdefault(sc, {})[t] = s
    return out


def paired(runs, sc, a, b, key):
    """Per-round ratios a/b of `key` in scenario `sc`: rounds measure both
    targets minutes apart at most, so the machine's drift between rounds,
    which the ratio of medians carries, cancels out.  (median, how many
    rounds a <= b, rounds) or None."""
    by = {}
    for r in runs:
        if r["scenario"] == sc and r["target"] in (a, b) and r.get(key):
            by.setdefault(r["round"], {})[r["target"]] = r[key]
    rs = [v[a] / v[b] for v in by.values() if a in v and b in v]
    return (statistics.median(rs), sum(x <= 1.0 for x in rs), len(rs)) if rs else None


def paired_text(p, a="strangler", b="nginx"):
    return "-" if p is None else f"{p[0]:.2f}x, {a} <= {b} in {p[1]} of {p[2]} rounds"


def fmt(x, nd=0):
    return "-" if x is None else f"{x:,.{nd}f}"


def mib(kb, nd=1):
    return "-" if kb is None else f"{kb / 1024:,.{nd}f}"


def ratio(a, b):
    return "-" if not a or not b else f"{a / b:.2f}x"


def pct(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}%"


def limit(s, target):
    """Which side saturated: the proxy's core (fair comparison) or the load core (result is a floor).
    `busy` = processes outside the bench took >= 10% of a core meanwhile: the number is suspect."""
    if (s.get("other_cpu_pct") or 0) >= 10:
        return "busy"
    if target != "direct" and s["cpu1_busy_pct"] >= 90:
        return "proxy"
    return "LOAD" if s["cpu0_busy_pct"] >= 95 else "-"


def grid(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
            for r in rows]


def doc(sc, args):
    return SCENARIO_DOC[sc].format(rate=args.rate, gd=args.bodygrow_duration,
                                   small=args.routes_small, big=args.routes_big,
                                   crate=args.compose_rate, delay=args.compose_delay,
                                   srate=args.shadow_rate, sdelay=args.shadow_delay)


def table(summary, mem, args):
    lines = []
    for sc in SCENARIOS:
        per = summary.get(sc)
        if not per:
            continue
        how = f"MiB/s median, RSS/HWM max of {args.rounds}" if sc == "bodygrow" else f"median of {args.rounds}"
        lines.append(f"\n== {sc}: {doc(sc, args)}  ({how})")
        if sc == "bodygrow":
            lines += bodygrow_table(per, mem)
            continue
        head = SCENARIOS[sc][4]
        cpu = lambda s: [fmt(s["target_cpu_pct"]), fmt(s["cpu_us_per_req"], 1), fmt(s["cpu0_busy_pct"]),
                         fmt(s["cpu1_busy_pct"]), fmt(s.get("other_cpu_pct"))]
        if sc == "latency":
            rows = [["target", "p50 ms", "p99 ms", "p99.9 ms", "rps", "spread", "p99/nginx", "p99/direct",
                     "tgt cpu%", "us/req", "cpu0%", "cpu1%", "other%", "err"]]
            for t, s in per.items():
                n, d = per.get("nginx", {}).get(head), per.get("direct", {}).get(head)
                rows.append([t, fmt(s["p50_ms"], 3), fmt(s["p99_ms"], 3), fmt(s["p99.9_ms"], 3), fmt(s["rps"]),
                             pct(s["spread_pct"], 0), ratio(s[head], n), ratio(s[head], d)] + cpu(s)
                            + [str(s["errors"])])
        elif sc == "compose-latency":
            rows = [["variant", "path", "p50 ms", "p99 ms", "p99.9 ms", "rps", "spread", "p50 - plain",
                     "tgt cpu%", "us/req", "cpu0%", "cpu1%", "other%", "err"]]
            paths = {label: p for label, _, p in compose_variants(sc, args)}
            plain = per.get("plain", {}).get("p50_ms")
            for t, s in per.items():
                over = None if plain is None or s["p50_ms"] is None else s["p50_ms"] - plain
                rows.append([t, paths.get(t, "?"), fmt(s["p50_ms"], 3), fmt(s["p99_ms"], 3), fmt(s["p99.9_ms"], 3),
                             fmt(s["rps"]), pct(s["spread_pct"], 0), "-" if over is None else f"{over:+.3f} ms"]
                            + cpu(s) + [str(s["errors"])])
        elif sc == "shadow":
            rows = [["variant", "path", "p50 ms", "p99 ms", "p99.9 ms", "rps", "spread", "p99/plain", "peak MiB",
                     "compared", "skipped", "sh.err", "tgt cpu%", "us/req", "cpu0%", "cpu1%", "other%", "err"]]
            paths = {label: p for label, _, p in shadow_variants(args)}
            base = per.get("plain", {}).get(head)
            for t, s in per.items():
                rows.append([t, paths.get(t, "?"), fmt(s["p50_ms"], 3), fmt(s["p99_ms"], 3), fmt(s["p99.9_ms"], 3),
                             fmt(s["rps"]), pct(s["spread_pct"], 0), ratio(s[head], base), mib(s["hwm_kb"]),
                             fmt(s["shadow_match"] + s["shadow_mismatch"]), fmt(s["shadow_skipped"]),
                             fmt(s["shadow_error"])] + cpu(s) + [str(s["errors"])])
        elif sc == "compose-rps":
            rows = [["variant", "path", "req/s", "MiB/s", "spread", "vs plain", "tgt cpu%", "us/req", "cpu0%",
                     "cpu1%", "other%", "limit", "err"]]
            paths = {label: p for label, _, p in compose_variants(sc, args)}
            base = per.get("plain", {}).get(head)
            for t, s in per.items():
                rows.append([t, paths.get(t, "?"), fmt(s["rps"]), fmt(s["mib_s"], 1), pct(s["spread_pct"]),
                             ratio(s[head], base)] + cpu(s) + [limit(s, t), str(s["errors"])])
        elif sc == "routes":
            rows = [["target", "routes", "req/s", "spread", "vs r10", "tgt cpu%", "us/req", "cpu0%", "cpu1%",
                     "other%", "limit", "err"]]
            base = per.get("strangler-r10", {}).get(head)
            for t, s in per.items():
                n = args.routes_small if t == "strangler-r10" else args.routes_big
                rows.append([t, f"{n:,}", fmt(s["rps"]), pct(s["spread_pct"]), ratio(s[head], base)] + cpu(s)
                            + [limit(s, t), str(s["errors"])])
        else:
            rows = [["target", "req/s", "MiB/s", "spread", "vs nginx", "vs direct", "tgt cpu%", "us/req",
                     "cpu0%", "cpu1%", "other%", "limit", "err"]]
            for t, s in per.items():
                n, d = per.get("nginx", {}).get(head), per.get("direct", {}).get(head)
                rows.append([t, fmt(s["rps"]), fmt(s["mib_s"], 1), pct(s["spread_pct"]),
                             ratio(s[head], n), ratio(s[head], d)] + cpu(s) + [limit(s, t), str(s["errors"])])
        lines += grid(rows)
    lines.append("\n== memory (whole process tree, MiB; idle = VmRSS after start + one GET /small; "
                 "peak = highest VmHWM seen over the run)")
    rows = [["target", "idle RSS", "peak HWM"]]
    for t, m in mem.items():
        rows.append([t, mib(m["idle_rss_kb"]), mib(m.get("peak_hwm_kb"))])
    lines += grid(rows)
    lines.append(
        "\nspread = (max-min)/median of the headline metric across rounds.  tgt cpu% = CPU time of the proxy\n"
        "(origin, for direct) / wall; us/req = that CPU per request.  cpu0%/cpu1% = busy share of each core\n"
        "(cpu0: load gen + origin, cpu1: proxy).  limit: proxy = proxy core saturated (fair); LOAD = load core\n"
        "saturated first, so req/s is only a floor for that proxy (compare us/req instead).  other% = CPU used\n"
        "meanwhile by processes outside the bench (shared machine); limit=busy when >= 10%: rerun that one.\n"
        "Latency: lower is better.  bodygrow RSS/HWM are the worst round (max), MiB/s the median.\n"
        "compose-*: variant direct = the origin alone (legacy-stub / origin nginx; tgt cpu% is the origin's),\n"
        "plain and composite = strangler-compose (tgt cpu% and us/req are strangler's, per client request).\n"
        "shadow: peak MiB = strangler-shadow's VmHWM during that variant's run (reset before it), worst round;\n"
        "compared / skipped / sh.err = copies by outcome (GET /admin/shadow), summed over the rounds.")
    return "\n".join(lines)


def bodygrow_table(per, mem):
    targets = []
    for size in GROW_SIZES:
        for t in per.get(size, {}):
            if t not in targets:
                targets.append(t)
    head = ["size"]
    for t in targets:
        head += [f"{t} RSS", "HWM", "MiB/s", "err"]
    rows = [head, ["idle"] + sum(([mib(mem[t]["idle_rss_kb"]), "-", "-", "-"] for t in targets), [])]
    for size in GROW_SIZES:
        if size not in per:
            continue
        row = [size.lstrip("/")]
        for t in targets:
            s = per[size].get(t)
            row += ([mib(s["rss_kb"]), mib(s["hwm_kb"]), fmt(s["mib_s"], 0), str(s["errors"])] if s
                    else ["-"] * 4)
        rows.append(row)
    return grid(rows) + ["  (RSS = VmRSS right after the size's load; HWM = peak VmRSS during it, "
                         "VmHWM reset before each size; MiB)"]


def summary_block(summary, mem, args, started, runs):
    g = lambda sc, t, k: summary.get(sc, {}).get(t, {}).get(k)
    out = ["\n== summary (the project's targets; ratios, not absolute numbers, are what to quote)"]
    if "strangler" not in started:
        out.append("  strangler target not run: nothing to compare")
        return "\n".join(out)
    if "small" in summary:
        out.append(f"  small     strangler/nginx req/s: {ratio(g('small', 'strangler', 'rps'), g('small', 'nginx', 'rps'))}"
                   f"   strangler/direct: {ratio(g('small', 'strangler', 'rps'), g('small', 'direct', 'rps'))}"
                   f"   (spread strangler {pct(g('small', 'strangler', 'spread_pct'))},"
                   f" nginx {pct(g('small', 'nginx', 'spread_pct'))})")
    if "latency" in summary:
        out.append(f"  latency   strangler p99 / nginx p99 at {args.rate} req/s: "
                   f"{ratio(g('latency', 'strangler', 'p99_ms'), g('latency', 'nginx', 'p99_ms'))}"
                   f"   ({fmt(g('latency', 'strangler', 'p99_ms'), 3)} ms vs {fmt(g('latency', 'nginx', 'p99_ms'), 3)} ms;"
                   f" paired per round: {paired_text(paired(runs, 'latency', 'strangler', 'nginx', 'p99_ms'))};"
                   " both loaded at once, the low-noise check: python3 bench/together.py)")
    idle = mem["strangler"]["idle_rss_kb"] / 1024
    out.append(f"  idle RSS  strangler {idle:.1f} MiB  (target < 20 MiB: {'met' if idle < 20 else 'NOT met'})"
               + (f";  nginx {mem['nginx']['idle_rss_kb'] / 1024:.1f} MiB" if "nginx" in mem else ""))
    bg = summary.get("bodygrow")
    if bg:
        for t in [x for x in ("strangler", "nginx", "strangler-log") if x in started]:
            rss = [bg.get(s, {}).get(t, {}).get("rss_kb") for s in GROW_SIZES]
            hwm = [bg.get(s, {}).get(t, {}).get("hwm_kb") for s in GROW_SIZES]
            if all(v is None for v in rss):
                continue
            grow = (rss[-1] - rss[0]) / 1024 if rss[0] is not None and rss[-1] is not None else None
            out.append(f"  bodygrow  {t:<13} RSS after 1k/1m/10m/100m: " + " / ".join(mib(v) for v in rss)
                       + f" MiB (100m - 1k: {fmt(grow, 1)} MiB); peak during each: "
                       + " / ".join(mib(v) for v in hwm) + " MiB")
    if "routes" in summary:
        a, b = g("routes", "strangler-r10k", "rps"), g("routes", "strangler-r10", "rps")
        verdict = "-" if not a or not b else ("met" if a / b >= 0.95 else "NOT met")
        out.append(f"  routes    {args.routes_big:,}/{args.routes_small} routes req/s: {ratio(a, b)}"
                   f"  (target >= 0.95x: {verdict}; spread r10 {pct(g('routes', 'strangler-r10', 'spread_pct'))},"
                   f" r10k {pct(g('routes', 'strangler-r10k', 'spread_pct'))})")
    if "compose-latency" in summary:
        c, p = g("compose-latency", "composite", "p50_ms"), g("compose-latency", "plain", "p50_ms")
        d = g("compose-latency", "direct", "p50_ms")
        over = None if c is None or p is None else c - p
        verdict = "-" if over is None else ("met" if over < 1.0 else "NOT met")
        out.append(f"  compose   composite p50 - plain p50 at {args.compose_rate} req/s, 3 legs on "
                   f"/delay/{args.compose_delay}: {'-' if over is None else f'{over:+.3f}'} ms"
                   f"  (target < 1 ms: {verdict}; p50 composite {fmt(c, 3)} ms, plain {fmt(p, 3)} ms,"
                   f" origin alone {fmt(d, 3)} ms; spread composite {pct(g('compose-latency', 'composite', 'spread_pct'))},"
                   f" plain {pct(g('compose-latency', 'plain', 'spread_pct'))})")
    if "compose-rps" in summary:
        a, b = g("compose-rps", "composite", "rps"), g("compose-rps", "plain", "rps")
        verdict = "-" if not a or not b else ("met" if a / b >= 0.33 else "NOT met")
        lim = lambda t: limit(summary["compose-rps"][t], t) if t in summary["compose-rps"] else "-"
        out.append(f"  compose   composite/plain req/s (3 legs on /json/...): {ratio(a, b)}"
                   f"  (target >= 0.33x: {verdict}; {fmt(a)} vs {fmt(b)} req/s; us/req composite"
                   f" {fmt(g('compose-rps', 'composite', 'cpu_us_per_req'), 1)}, plain"
                   f" {fmt(g('compose-rps', 'plain', 'cpu_us_per_req'), 1)}; limit {lim('composite')}/{lim('plain')};"
                   f" spread {pct(g('compose-rps', 'composite', 'spread_pct'))}/{pct(g('compose-rps', 'plain', 'spread_pct'))})")
    if "shadow" in summary:
        a, b = g("shadow", "shadowed", "p99_ms"), g("shadow", "plain", "p99_ms")
        verdict = "-" if not a or not b else ("met" if a / b <= 1.10 else "NOT met")
        out.append(f"  shadow   p99 with 100% shadow / without: {ratio(a, b)} (target <= 1.10x: {verdict})"
                   f"   ({fmt(a, 3)} ms vs {fmt(b, 3)} ms at {args.shadow_rate} req/s; p50 "
                   f"{fmt(g('shadow', 'shadowed', 'p50_ms'), 3)} vs {fmt(g('shadow', 'plain', 'p50_ms'), 3)} ms;"
                   f" spread {pct(g('shadow', 'shadowed', 'spread_pct'))}/{pct(g('shadow', 'plain', 'spread_pct'))};"
                   f" paired per round: {paired_text(paired(runs, 'shadow', 'shadowed', 'plain', 'p99_ms'), 'shadowed', 'plain')})")
        sh = summary["shadow"].get("shadowed")
        if sh:
            out.append(f"  shadow   RSS during a slow shadow: {mib(sh['hwm_kb'], 0)} MiB peak"
                       f"   (shadow answers after {args.shadow_delay} ms; idle {mib(mem.get(SHADOW, {}).get('idle_rss_kb'))}"
                       f" MiB, peak without shadow {mib(g('shadow', 'plain', 'hwm_kb'))} MiB; copies compared"
                       f" {fmt(sh['shadow_match'] + sh['shadow_mismatch'])}, skipped {fmt(sh['shadow_skipped'])},"
                       f" error {fmt(sh['shadow_error'])})")
    if "strangler-log" in started and "small" in summary:
        out.append(f"  accesslog strangler-log/strangler req/s (small): "
                   f"{ratio(g('small', 'strangler-log', 'rps'), g('small', 'strangler', 'rps'))}"
                   f"   p99 (latency): {ratio(g('latency', 'strangler-log', 'p99_ms'), g('latency', 'strangler', 'p99_ms'))}"
                   f"   ({mem['strangler-log'].get('access_log_bytes', 0) / MIB:,.0f} MiB of log written)")
    return "\n".join(out)


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="direct,nginx,strangler",
                    help="comma list from " + ",".join(TARGET_ORDER) + " (haproxy, caddy: optional peers, "
                    "if installed; strangler-log: strangler with the access log on)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list from " + ",".join(SCENARIOS))
    ap.add_argument("--strangler-bin", default=os.path.join(REPO, "target", "release", "strangler"),
                    help="strangler binary (default: target/release/strangler in the repo)")
    ap.add_argument("--rust-log", default="warn", help="RUST_LOG for strangler (default warn: no access log)")
    ap.add_argument("--access-log", action="store_true",
                    help="also run strangler-log: strangler with RUST_LOG=info (access log on), stderr to "
                    "{rundir}/strangler-log.log, side by side with strangler")
    ap.add_argument("--access-log-format", choices=["json", "pretty"], default="json",
                    help="strangler-log's --log-format (default json, one object per line, as in production)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement (wrk -d / oha -z)")
    ap.add_argument("--bodygrow-duration", type=int, default=None,
                    help="seconds per size in bodygrow (default: min(duration, 5))")
    ap.add_argument("--rate", type=int, default=2000, help="fixed request rate for the latency scenario")
    ap.add_argument("--routes-small", type=int, default=10, help="routes in the small routes config (>= 5)")
    ap.add_argument("--routes-big", type=int, default=10000, help="routes in the big routes config")
    ap.add_argument("--compose-delay", type=int, default=20,
                    help="ms the delayed origin waits before answering, per leg (compose-latency; default 20)")
    ap.add_argument("--compose-rate", type=int, default=200,
                    help="fixed request rate of compose-latency (default 200 req/s: 600 leg calls/s)")
    ap.add_argument("--shadow-delay", type=int, default=200,
                    help="ms the slow shadow (legacy-stub) waits before answering each copy (shadow; default 200)")
    ap.add_argument("--shadow-rate", type=int, default=None,
                    help="fixed request rate of the shadow scenario (default: --rate)")
    ap.add_argument("--stub-bin", default=os.path.join(REPO, "target", "release", "legacy-stub"),
                    help="legacy-stub binary, the delayed origin of compose-latency "
                    "(default: target/release/legacy-stub in the repo)")
    ap.add_argument("--pause", type=float, default=1.0, help="seconds of idle between measurements")
    ap.add_argument("--start-timeout", type=float, default=20, help="seconds for a target to answer at start")
    ap.add_argument("--rundir", default="/tmp/bench-run", help="configs, pid files, logs (wiped at start)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the JSON + text report")
    args = ap.parse_args()
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if args.access_log and "strangler-log" not in args.targets:
        args.targets.append("strangler-log")
    for t in args.targets:
        if t not in TARGET_ORDER:
            ap.error(f"unknown target {t} (choose from {','.join(TARGET_ORDER)})")
    args.targets = [t for t in TARGET_ORDER if t in args.targets]
    if args.shadow_rate is None:
        args.shadow_rate = args.rate
    if args.bodygrow_duration is None:
        args.bodygrow_duration = min(args.duration, 5)
    if args.routes_small < 5 or args.routes_big < 5:
        ap.error("--routes-small / --routes-big must be >= 5")
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s} (choose from {','.join(SCENARIOS)})")

    for tool in ["taskset", "nginx", "wrk"] + [t for t in ("haproxy", "caddy") if t in args.targets]:
        if not shutil.which(tool):
            ap.error(f"{tool} not found on PATH (bash bench/setup.sh installs nginx, wrk and oha)")
    if "latency" in scenarios and not shutil.which("oha"):
        print("NOTE: oha not found on PATH: skipping the latency scenario (bash bench/setup.sh installs it: "
              "cargo install oha --locked)", file=sys.stderr)
        scenarios.remove("latency")
    uses_strangler = any(t.startswith("strangler") for t in args.targets)
    if "routes" in scenarios and "strangler" not in args.targets:
        print("NOTE: the routes scenario measures strangler only; skipped because strangler is not in --targets",
              file=sys.stderr)
        scenarios.remove("routes")
    for sc in [sc for sc in VARIANT_SCENARIOS if sc in scenarios]:
        if "strangler" not in args.targets:
            print(f"NOTE: the {sc} scenario measures strangler only; skipped because strangler is not in --targets",
                  file=sys.stderr)
            scenarios.remove(sc)
    for sc in [sc for sc in ("compose-latency", "shadow") if sc in scenarios]:
        if not shutil.which("oha"):
            print(f"NOTE: oha not found on PATH: skipping the {sc} scenario", file=sys.stderr)
            scenarios.remove(sc)
    if "compose-latency" in scenarios or "shadow" in scenarios:
        args.stub_bin = os.path.abspath(args.stub_bin)
        if not (os.path.isfile(args.stub_bin) and os.access(args.stub_bin, os.X_OK)):
            print(f"ERROR: legacy-stub binary not found or not executable: {args.stub_bin}\n"
                  f"  build it (cargo build --release), point --stub-bin at it, or leave compose-latency and shadow out",
                  file=sys.stderr)
            sys.exit(2)
    if uses_strangler:
        args.strangler_bin = os.path.abspath(args.strangler_bin)
        if not (os.path.isfile(args.strangler_bin) and os.access(args.strangler_bin, os.X_OK)):
            print(f"ERROR: strangler binary not found or not executable: {args.strangler_bin}\n"
                  f"  build it (cargo build --release), point --strangler-bin at it, or leave strangler out:\n"
                  f"  --targets direct,nginx", file=sys.stderr)
            sys.exit(2)
    if not scenarios:
        ap.error("no scenario left to run")

    ports = [BACKEND_PORT] + [PORTS[t] for t in args.targets if t != "direct"]
    if "routes" in scenarios:
        ports += [PORTS[t] for t in ROUTE_TARGETS]
    if any(sc in scenarios for sc in COMPOSE_SCENARIOS):
        ports.append(PORTS[COMPOSE])
    if "compose-latency" in scenarios or "shadow" in scenarios:
        ports.append(PORTS[STUB])
    if "shadow" in scenarios:
        ports += [PORTS[SHADOW], SHADOW_ADMIN_PORT]
    busy = [p for p in ports if port_in_use(p)]
    if busy:
        sys.exit(f"ERROR: ports already in use on {HOST}: {busy} (stop whatever you started there first)")

    os.sched_setaffinity(0, {int(LOAD_CPU)})  # keep this script off the proxy's core
    shutil.rmtree(args.rundir, ignore_errors=True)
    os.makedirs(args.rundir)
    os.chmod(args.rundir, 0o755)  # nginx workers run as nobody and must read www/
    os.makedirs(args.out, exist_ok=True)

    def on_term(*_):
        raise KeyboardInterrupt  # unwinds into the finally below, which stops our children
    signal.signal(signal.SIGTERM, on_term)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs, mem, problems = [], {}, []
    try:
        try:
            started, trees, idle, digests = setup_targets(args, args.rundir, scenarios)
        except StartError as e:
            print(f"ERROR: {e}", file=sys.stderr)
            stop_all()
            sys.exit(3)
        mem = {t: {"idle_rss_kb": idle[t]} for t in started}
        OURS.add(os.getpid())
        for tree in trees.values():
            OURS.update(tree)
        peak = {t: 0 for t in started}

        def note_hwm(t):
            peak[t] = max(peak[t], tree_mem_kb(trees[t], "VmHWM"))

        main_targets = [t for t in args.targets if t in started]
        proxies = [t for t in main_targets if t != "direct"]
        plan = {sc: (ROUTE_TARGETS if sc == "routes" else proxies if sc == "bodygrow"
                     else [label for label, _, _ in variants(sc, args)] if sc in VARIANT_SCENARIOS
                     else main_targets)
                for sc in scenarios}
        # (scenario, label) -> (target, path): a compose or shadow scenario measures several paths of one target
        where = {(sc, label): (t, p) for sc in scenarios if sc in VARIANT_SCENARIOS
                 for label, t, p in variants(sc, args)}
        for sc in [sc for sc in scenarios if not plan[sc]]:
            print(f"NOTE: no target for {sc} (it measures proxies only): skipped", file=sys.stderr)
            scenarios.remove(sc)
        n_meas = sum(len(plan[sc]) * (len(GROW_SIZES) if sc == "bodygrow" else 1) for sc in scenarios)
        secs = sum(len(plan[sc]) * (len(GROW_SIZES) * (args.bodygrow_duration + args.pause + 0.3)
                                    if sc == "bodygrow" else args.duration + args.pause + 0.3)
                   for sc in scenarios) * args.rounds
        print(f"targets: {main_targets}" + (f" + {ROUTE_TARGETS}" if "routes" in scenarios else "")
              + "".join(f" + {t}" for t in (COMPOSE, SHADOW, STUB) if t in started)
              + f"\nscenarios: {scenarios}\n{n_meas * args.rounds} measurements => ~{secs / 60:.1f} min", flush=True)
        print("idle RSS MiB: " + ", ".join(f"{t} {idle[t] / 1024:.1f}" for t in started), flush=True)

        warm = {t: [(ROUTES_PATH if t in ROUTE_TARGETS else "/small", 64, 2)] for t in started}
        for (sc, label), (t, path) in where.items():  # the compose paths too (fills the leg pools)
            warm[t].append((path, 16, 1))
        for t in started:
            try:
                for path, conns, secs in warm[t]:
                    run_wrk(f"http://{HOST}:{started[t][0]}{path}", conns, secs, [])  # warm-up, not recorded
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                print(f"ERROR: {t}: warm-up failed: {e}\n{log_tail(args.rundir, t)}", file=sys.stderr)
                stop_all()
                sys.exit(3)

        dead = set()
        for rnd in range(args.rounds):
            for sc in scenarios:
                names = plan[sc]
                order = names[rnd % len(names):] + names[:rnd % len(names)]  # rotate start each round
                tool, path, conns, extra, head, _ = SCENARIOS[sc]
                for size in (GROW_SIZES if sc == "bodygrow" else [None]):
                    for label in order:
                        t, path = where.get((sc, label), (label, SCENARIOS[sc][1]))
                        if t in dead:
                            continue
                        time.sleep(args.pause)
                        port = started[t][0]
                        try:
                            if sc == "bodygrow":
                                note_hwm(t)
                                reset_hwm(trees[t])
                                res, _ = measure("wrk", f"http://{HOST}:{port}{size}", conns, extra,
                                                 args.bodygrow_duration, trees[t], args, wrk_timeout=30)
                                res["rss_kb"] = tree_mem_kb(trees[t], "VmRSS")
                                res["hwm_kb"] = tree_mem_kb(trees[t], "VmHWM")
                                res["size"] = size
                                msg = (f"{size:<5} rss={res['rss_kb'] / 1024:.1f}MiB hwm={res['hwm_kb'] / 1024:.1f}MiB "
                                       f"{res['mib_s'] or 0:,.0f}MiB/s")
                            else:
                                if sc == "shadow":  # the peak of this run alone
                                    note_hwm(t)
                                    reset_hwm(trees[t])
                                    out0 = shadow_outcomes()
                                rate = {"compose-latency": args.compose_rate, "shadow": args.shadow_rate}.get(sc)
                                res, _ = measure(tool, f"http://{HOST}:{port}{path}", conns, extra, args.duration,
                                                 trees[t], args, rate=rate)
                                msg = f"{head}={res[head]:,.2f}" if res.get(head) is not None else f"{head}=-"
                                if sc == "shadow":
                                    res["rss_kb"] = tree_mem_kb(trees[t], "VmRSS")
                                    res["hwm_kb"] = tree_mem_kb(trees[t], "VmHWM")
                                    time.sleep(args.shadow_delay / 1e3 + 0.2)  # let the last copies finish
                                    out1 = shadow_outcomes()
                                    for k in ("match", "mismatch", "error", "skipped"):
                                        res["shadow_" + k] = out1.get(k, 0) - out0.get(k, 0)
                                    msg += (f" hwm={res['hwm_kb'] / 1024:.1f}MiB copies compared="
                                            f"{res['shadow_match'] + res['shadow_mismatch']} skipped="
                                            f"{res['shadow_skipped']} error={res['shadow_error']}")
                        except (RuntimeError, subprocess.TimeoutExpired) as e:
                            why = ""
                            if started[t][1].poll() is not None:
                                dead.add(t)
                                why = f" ({t} exited, rc={started[t][1].returncode}; not measured from then on)"
                            what = size or (path if (sc, label) in where else "")
                            problems.append(f"{t} {sc} {what}: measurement failed{why}: {str(e).strip()[:300]}")
                            print(f"WARNING: {problems[-1]}\n{log_tail(args.rundir, t)}", file=sys.stderr)
                            continue
                        res.update(round=rnd + 1, scenario=sc, target=label)
                        if (sc, label) in where:
                            res.update(measured=t, path=path)
                            msg = f"{path} {msg}"
                        runs.append(res)
                        print(f"  r{rnd + 1} {sc:<8} {label:<14} {msg} tgt_cpu={res['target_cpu_pct']:.0f}% "
                              f"cpu0={res['cpu0_busy_pct']:.0f}% cpu1={res['cpu1_busy_pct']:.0f}% "
                              f"other={res['other_cpu_pct']:.0f}% err={res['errors']}", flush=True)
                        if started[t][1].poll() is not None:
                            dead.add(t)
                            problems.append(f"{t} exited during {sc} (rc={started[t][1].returncode}); "
                                            f"not measured from then on")
                            print(f"WARNING: {problems[-1]}\n{log_tail(args.rundir, t)}", file=sys.stderr)

        for t in started:
            if started[t][1].poll() is not None:
                if not any(p.startswith(t + " ") for p in problems):
                    problems.append(f"{t} exited during the run (rc={started[t][1].returncode})")
                continue
            note_hwm(t)
            mem[t]["peak_hwm_kb"] = peak[t]
        if "bodygrow" in scenarios:  # the big bodies, byte for byte, now that their RSS is recorded
            for t in proxies:
                if started[t][1].poll() is None:
                    for path in CHECK_LATE:
                        err = check_body(started[t][0], path, digests[path], BODY_SIZES[path])
                        if err:
                            problems.append(f"{t}: body check failed: {err}")
        if "strangler-log" in started:
            mem["strangler-log"]["access_log_bytes"] = os.path.getsize(
                os.path.join(args.rundir, "strangler-log.log"))
    except KeyboardInterrupt:
        print("\ninterrupted: stopping what we started", file=sys.stderr)
        stop_all()
        sys.exit(130)
    finally:
        stop_all()

    summary = summarize(runs)
    text = table(summary, mem, args) + "\n" + summary_block(summary, mem, args, started, runs)
    if problems:
        text += "\n\n== PROBLEMS (results above are suspect)\n" + "\n".join("  " + p for p in problems)
    print(text)
    meta = {"started": stamp, "host": HOST, "load_cpu": LOAD_CPU, "proxy_cpu": PROXY_CPU,
            "rounds": args.rounds, "duration_s": args.duration, "bodygrow_duration_s": args.bodygrow_duration,
            "rate": args.rate, "targets": list(started), "routes": [args.routes_small, args.routes_big],
            "routes_path": ROUTES_PATH, "rust_log": args.rust_log,
            "compose_delay_ms": args.compose_delay, "compose_rate": args.compose_rate,
            "shadow_delay_ms": args.shadow_delay, "shadow_rate": args.shadow_rate,
            "scenarios": {s: doc(s, args) for s in scenarios}, "versions": versions(args)}
    base = os.path.join(args.out, f"run-{stamp}")
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "summary": summary, "memory": mem, "runs": runs, "problems": problems}, f, indent=1)
    with open(base + ".txt", "w") as f:
        f.write(text + "\n")
    print(f"\nwrote {base}.json and {base}.txt")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
