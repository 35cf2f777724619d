"""Plumbing for the conformance suite: the check registry and runner, the
processes (upstreams and the proxy), and small clients shared by the checks.

A check is a function taking the `World` (where everything runs) and
registered with `@check(name)`. It passes by returning, optionally with a list
of notes (strings printed under its PASS line); it fails by raising `Fail`
(or any exception), and may raise `Skip`. Each check runs in a thread of its
own with a watchdog, so one that fails or hangs never stops the others.
"""

from __future__ import annotations

import ctypes
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent

# ---------------------------------------------------------------------------
# Check registry


class Fail(Exception):
    """A check found the proxy (or upstream, in --direct mode) misbehaving."""


class Skip(Exception):
    """A check that does not apply in this run."""


def expect(condition, message: str) -> None:
    if not condition:
        raise Fail(message)


@dataclass
class Check:
    name: str
    fn: Callable
    direct: bool  # meaningful against the upstream alone (--direct)
    timeout: float  # watchdog, seconds
    doc: str


CHECKS: list[Check] = []


def check(name: str, *, direct: bool = True, timeout: float = 60.0):
    """Registers a check. `direct=False`: it tests something only the proxy
    does (or needs h2c, which the HTTP/1 upstreams do not speak), so --direct
    skips it."""

    def register(fn):
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"duplicate check {name}")
        CHECKS.append(Check(name, fn, direct, timeout, (fn.__doc__ or "").strip()))
        return fn

    return register


@dataclass
class Outcome:
    status: str  # PASS | FAIL | SKIP
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_check(c: Check, world: "World") -> Outcome:
    box: dict = {}

    def body():
        started = time.monotonic()
        try:
            notes = c.fn(world) or []
            box["outcome"] = Outcome("PASS", notes=list(notes))
        except Skip as e:
            box["outcome"] = Outcome("SKIP", str(e))
        except Fail as e:
            box["outcome"] = Outcome("FAIL", str(e))
        except Exception as e:  # a crash in the check is a failure too, with its trace
            tb = traceback.format_exc(limit=4).strip().splitlines()
            box["outcome"] = Outcome("FAIL", f"{type(e).__name__}: {e}", notes=tb[-4:])
        box["outcome"].seconds = time.monotonic() - started

    t = threading.Thread(target=body, name=c.name, daemon=True)
    t.start()
    t.join(c.timeout)
    if t.is_alive():
        return Outcome("FAIL", f"check did not finish within {c.timeout:.0f} s", seconds=c.timeout)
    return box["outcome"]


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def report(c: Check, o: Outcome, out=sys.stdout) -> None:
    if o.status == "PASS":
        out.write(f"PASS {c.name}\n")
    elif o.status == "SKIP":
        out.write(f"SKIP {c.name}: {one_line(o.reason)}\n")
    else:
        out.write(f"FAIL {c.name}: {one_line(o.reason)}\n")
    for n in o.notes:
        out.write(f"    {n}\n")
    out.flush()


# ---------------------------------------------------------------------------
# Processes


def clean_env(**extra) -> dict:
    """The environment for children: no proxies (every connection here is
    to 127.0.0.1), no RUST_LOG, no colors."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy") and k != "RUST_LOG"
    }
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    stdout: Path
    stderr: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self, n: int = 20) -> str:
        lines = []
        for p in (self.stdout, self.stderr):
            try:
                lines += p.read_text(errors="replace").splitlines()[-n:]
            except OSError:
                pass
        return "\n".join(lines)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the suite dies, even by SIGKILL, so
    that no upstream or proxy outlives it (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def spawn(name: str, cmd: list[str], logdir: Path, pass_fds=()) -> Service:
    out, err = logdir / f"{name}.stdout", logdir / f"{name}.stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=o,
            stderr=e,
            env=clean_env(),
            pass_fds=pass_fds,
            cwd=HERE,
            preexec_fn=_die_with_parent,
        )
    return Service(name, proc, out, err)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05):
    """Polls `predicate` until it returns something truthy (returned) or
    `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def first_json_line(svc: Service, key: str, timeout: float = 30.0, stream: str = "stdout"):
    """Waits until the service prints a JSON line that has `key`."""

    def find():
        if not svc.alive():
            raise RuntimeError(f"{svc.name} exited early:\n{svc.tail()}")
        path = svc.stdout if stream == "stdout" else svc.stderr
        for line in path.read_text(errors="replace").splitlines():
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if isinstance(v, dict) and key in v:
                return v
        return None

    v = wait_for(find, timeout)
    if v is None:
        raise RuntimeError(f"{svc.name} printed no {key!r} within {timeout} s:\n{svc.tail()}")
    return v


def start_node(logdir: Path) -> tuple[Service, int]:
    svc = spawn("node", ["node", str(HERE / "node_upstream.js")], logdir)
    return svc, first_json_line(svc, "port")["port"]


def start_ws(logdir: Path) -> tuple[Service, int]:
    svc = spawn("websockets", [sys.executable, str(HERE / "ws_upstream.py")], logdir)
    return svc, first_json_line(svc, "port")["port"]


def start_httpbin(logdir: Path) -> tuple[Service, int]:
    """httpbin under gunicorn on a socket bound here (port 0) and handed over
    as `--bind fd://N`: no port is guessed, nothing to retry."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"fd://{sock.fileno()}",
        "--worker-class", "gthread", "--workers", "1", "--threads", "16",
        "--keep-alive", "120",  # longer than the proxy's pool keeps idle connections
        "--timeout", "120",
        "--no-control-socket",
        "httpbin:app",
    ]  # fmt: skip
    try:
        svc = spawn("httpbin", cmd, logdir, pass_fds=(sock.fileno(),))
    finally:
        sock.close()

    def answers():
        if not svc.alive():
            raise RuntimeError(f"httpbin exited early:\n{svc.tail()}")
        try:
            return http1(("127.0.0.1", port), "GET", "/get", timeout=2).status == 200
        except OSError:
            return False

    if not wait_for(answers, 30, 0.2):
        raise RuntimeError(f"httpbin did not answer within 30 s:\n{svc.tail()}")
    return svc, port


PROXY_CONFIG = """\
# Written by tests/conformance/suite.py.
[server]
listen = "127.0.0.1:0"
idle_timeout = "1s"           # h2_idle_ping_timeout: closed after ~1 s ...
header_read_timeout = "10s"   # ... well before this
request_timeout = "60s"
max_request_body = "64MiB"

[upstreams.httpbin]
targets = ["http://127.0.0.1:{httpbin}"]

[upstreams.node]
targets = ["http://127.0.0.1:{node}"]

[upstreams.ws]
targets = ["http://127.0.0.1:{ws}"]

# httpbin answers everything no route takes, so its redirects (Location: /get)
# come back through the proxy to it.
[default]
upstream = "httpbin"

[[routes]]
name = "node"
prefix = "/node"
upstream = "node"

[[routes]]
name = "ws"
prefix = "/ws"
upstream = "ws"
"""


def start_proxy(binary: str, logdir: Path, ports: dict) -> tuple[Service, int]:
    config = logdir / "strangler.toml"
    config.write_text(PROXY_CONFIG.format(**ports))
    svc = spawn("strangler", [binary, "run", "--config", str(config), "--log-format", "json"], logdir)
    addr = first_json_line(svc, "addr", stream="stderr")["addr"]
    port = int(addr.rsplit(":", 1)[1])

    def answers():
        if not svc.alive():
            raise RuntimeError(f"strangler exited early:\n{svc.tail()}")
        try:
            return http1(("127.0.0.1", port), "GET", "/node/ping", timeout=2).status == 200
        except OSError:
            return False

    if not wait_for(answers, 30, 0.1):
        raise RuntimeError(f"strangler did not answer /node/ping within 30 s:\n{svc.tail()}")
    return svc, port


# ---------------------------------------------------------------------------
# The world the checks run in


@dataclass
class World:
    direct: bool
    tmp: Path
    upstreams: dict[str, int]  # name -> port on 127.0.0.1
    proxy: Service | None = None
    proxy_port: int | None = None

    def addr(self, upstream: str) -> tuple[str, int]:
        """Where a client sends a request meant for `upstream`: the proxy, or
        the upstream itself in --direct mode."""
        if self.direct:
            return ("127.0.0.1", self.upstreams[upstream])
        return ("127.0.0.1", self.proxy_port)

    def authority(self, upstream: str) -> str:
        host, port = self.addr(upstream)
        return f"{host}:{port}"

    def url(self, upstream: str, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.authority(upstream)}{path}"

    # -- the Node upstream's side channel (always direct, never proxied) --

    def node_side(self, path: str, timeout: float = 20.0) -> dict:
        r = http1(("127.0.0.1", self.upstreams["node"]), "GET", path, timeout=timeout)
        return json.loads(r.body or b"null")

    def release(self, gate: str) -> None:
        self.node_side(f"/node/gate/release?id={gate}")

    def gate_state(self, gate: str, wait_ms: int = 0, **conditions) -> dict:
        q = {"id": gate, "wait_ms": str(wait_ms), **{k: str(v) for k, v in conditions.items()}}
        return self.node_side("/node/gate/state?" + urllib.parse.urlencode(q), timeout=wait_ms / 1000 + 10)

    def record(self, probe: str) -> dict | None:
        r = http1(("127.0.0.1", self.upstreams["node"]), "GET", f"/node/record?probe={probe}", timeout=10)
        return json.loads(r.body) if r.status == 200 else None

    # -- the proxy --

    def access_log(self) -> list[dict]:
        """The proxy's access-log lines (`strangler::access`) so far."""
        if self.proxy is None:
            return []
        lines = []
        for line in self.proxy.stderr.read_text(errors="replace").splitlines():
            if "strangler::access" not in line:
                continue
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines

    def wait_access(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict | None:
        return wait_for(lambda: next((v for v in self.access_log() if predicate(v)), None), timeout, 0.1)

    def proxy_serves(self) -> list[str]:
        """Problems with the proxy right now: empty if the process is alive and
        a fresh HTTP/1.1 request and a fresh h2c request both get 200."""
        from h2util import H2Client  # late: h2util imports this module

        problems = []
        if self.proxy is not None and not self.proxy.alive():
            return [f"the proxy exited (code {self.proxy.proc.returncode})"]
        try:
            r = http1(self.addr("node"), "GET", "/node/ping", timeout=10)
            if r.status != 200:
                problems.append(f"HTTP/1.1 GET /node/ping got {r.status}")
        except OSError as e:
            problems.append(f"HTTP/1.1 GET /node/ping failed: {e}")
        try:
            with H2Client(self.addr("node")) as c:
                status, _, _ = c.get("/node/ping", self.authority("node"))
                if status != 200:
                    problems.append(f"h2c GET /node/ping got {status}")
        except Exception as e:
            problems.append(f"h2c GET /node/ping failed: {e}")
        return problems


# ---------------------------------------------------------------------------
# Clients


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


def http1(addr, method: str, target: str, headers=(), body: bytes | None = None, timeout: float = 20.0) -> Response:
    """One HTTP/1.1 request with exactly these headers (plus Host, unless
    given, and Content-Length for a body): Python's http.client adds nothing
    else, so hop-by-hop headers go out as written."""
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            conn.putheader("Host", f"{addr[0]}:{addr[1]}")
        for k, v in headers:
            conn.putheader(k, v)
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, list(r.getheaders()), data)
    finally:
        conn.close()


CURL = ["curl", "-sS", "--noproxy", "*"]


def curl(args: list[str], timeout: float = 30.0, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs curl to completion (with `--max-time`), output as bytes."""
    cmd = CURL + ["--max-time", str(int(timeout))] + args
    return subprocess.run(cmd, input=input, capture_output=True, timeout=timeout + 10, env=clean_env())


def parse_dumped_headers(raw: bytes) -> list[tuple[int, list[tuple[str, str]]]]:
    """The responses in a `curl -D` dump, 1xx ones included: [(status, headers)]."""
    out = []
    for line in raw.decode("latin1").splitlines():
        line = line.rstrip("\r")
        if line.startswith("HTTP/"):
            out.append((int(line.split()[1]), []))
        elif ":" in line and out:
            k, v = line.split(":", 1)
            out[-1][1].append((k.strip(), v.strip()))
    return out


class Streaming:
    """A child process (curl) whose stdout is collected as it arrives, so a
    check can wait for a part of the body while the rest is still held."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env()
        )
        self.data = bytearray()
        self.cond = threading.Condition()
        self.eof = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self.cond:
                if not chunk:
                    self.eof = True
                else:
                    self.data += chunk
                self.cond.notify_all()
            if not chunk:
                return

    def wait_for(self, predicate: Callable[[bytes], bool], timeout: float) -> bool:
        """True once `predicate(body so far)` holds; False on timeout or EOF."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(bytes(self.data)):
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return False
                self.cond.wait(left)
            return True

    def snapshot(self) -> bytes:
        with self.cond:
            return bytes(self.data)

    def finish(self, timeout: float = 20.0) -> tuple[int | None, bytes, str]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with self.cond:
            self.cond.wait_for(lambda: self.eof, 5)
            data = bytes(self.data)
        return self.proc.returncode, data, self.proc.stderr.read().decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def random_file(tmp: Path, name: str, size: int) -> tuple[Path, str]:
    """A file of `size` random bytes and its sha256."""
    data = os.urandom(size)
    p = tmp / name
    p.write_bytes(data)
    return p, sha256(data)


def new_id() -> str:
    return os.urandom(8).hex()


def find_chromium() -> str | None:
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    return shutil.which("chromium")
