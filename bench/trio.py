"""The three processes the latency tools share: the origin (nginx, CPU 0) and
the two proxies in front of it, nginx and strangler (CPU 1), as run.py pins
them; and oha, started without waiting, so that two can run at once.

    with Trio(ports=(18120, 18121, 18122), strangler_bin=...) as trio:
        trio.pids["strangler"], trio.ports["nginx"], trio.rundir

Everything is in a fresh temporary directory, removed on exit; only the
processes started here are ever signalled.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile

from instructions import HOST, render, subs, wait_ready

LOAD_CPU, PROXY_CPU = "0", "1"
PROXIES = ("nginx", "strangler")


class Trio:
    """Origin, nginx and strangler, up and answering /small inside the `with`.

    `single_nginx` runs nginx without its master process, so that the
    worker is the process whose pid is in `pids` (bpftrace traces it)."""

    def __init__(self, ports, strangler_bin, single_nginx=False):
        self.origin, nginx, strangler = ports
        self.ports = {"nginx": nginx, "strangler": strangler}
        self.strangler_bin = os.path.abspath(strangler_bin)
        self.single_nginx = single_nginx
        self.procs, self.logs, self.pids, self.rundir = [], [], {}, None

    def _start(self, argv, cpu, name):
        log = open(os.path.join(self.rundir, name + ".log"), "w")
        self.logs.append(log)
        p = subprocess.Popen(["taskset", "-c", cpu] + argv, stdout=log, stderr=subprocess.STDOUT,
                             env=dict(os.environ, RUST_LOG="warn"))
        self.procs.append(p)
        return p

    def __enter__(self):
        if not os.access(self.strangler_bin, os.X_OK):
            raise SystemExit(f"strangler binary not found: {self.strangler_bin} (cargo build --release)")
        self.rundir = tempfile.mkdtemp(prefix="strangler-bench-")
        for d in ("www", "conf"):
            os.makedirs(os.path.join(self.rundir, d), exist_ok=True)
        try:
            at = lambda port: subs(port, self.rundir, origin=self.origin)
            self._start(["nginx", "-p", self.rundir, "-e", os.path.join(self.rundir, "origin.error.log"), "-c",
                         render("backend-nginx.conf", os.path.join(self.rundir, "origin.conf"), at(self.origin))],
                        LOAD_CPU, "origin")
            wait_ready(self.origin, "/small")
            conf = render("nginx.conf", os.path.join(self.rundir, "nginx.conf"), at(self.ports["nginx"]))
            if self.single_nginx:
                with open(conf) as f:
                    text = f.read().replace("worker_processes 1;", "worker_processes 1; master_process off;")
                with open(conf, "w") as f:
                    f.write(text)
            self.pids["nginx"] = self._start(["nginx", "-p", self.rundir, "-e",
                                              os.path.join(self.rundir, "nginx.error.log"), "-c", conf],
                                             PROXY_CPU, "nginx").pid
            # The config in a directory of its own, as run.py does: the reload
            # watcher watches it, and the logs must not wake it.
            conf = render("strangler.toml.tmpl", os.path.join(self.rundir, "conf", "strangler.toml"),
                          at(self.ports["strangler"]))
            self.pids["strangler"] = self._start([self.strangler_bin, "run", "--config", conf],
                                                 PROXY_CPU, "strangler").pid
            for port in self.ports.values():
                wait_ready(port, "/small")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.rundir, ignore_errors=True)


def oha(port, rate, conns, duration, path="/small"):
    """Starts oha on the load CPU against this host's `port` and `path`;
    see `oha_url`."""
    return oha_url(f"http://{HOST}:{port}{path}", rate, conns, duration)


def oha_url(url, rate, conns, duration):
    """Starts oha on the load CPU at a fixed rate, with latency correction
    (each request timed from when it was due). Read it with `percentiles`."""
    return subprocess.Popen(["taskset", "-c", LOAD_CPU, "oha", "--no-tui", "--output-format", "json",
                             "-q", str(rate), "-z", f"{duration}s", "-c", str(conns),
                             "--latency-correction", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def percentiles(proc, duration):
    """oha's p50/p99/p99.9 in ms (None when oha gave none) and its non-2xx or
    failed requests (those in flight at the deadline are not counted).
    RuntimeError when oha failed."""
    try:
        out, err = proc.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    try:
        j = json.loads(out)
        pct = j["latencyPercentiles"]
    except (ValueError, KeyError) as e:
        raise RuntimeError(f"oha failed (rc={proc.returncode}, {e}): {(err + out).strip()[-500:]}")
    errors = sum(v for k, v in (j.get("errorDistribution") or {}).items() if "deadline" not in k)
    errors += sum(v for k, v in (j.get("statusCodeDistribution") or {}).items() if not k.startswith("2"))
    ms = lambda v: None if v is None else v * 1e3
    return {"p50": ms(pct.get("p50")), "p99": ms(pct.get("p99")), "p99.9": ms(pct.get("p99.9")),
            "rps": j["summary"]["requestsPerSec"], "errors": errors}
