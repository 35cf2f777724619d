"""Checks with whole third-party clients: the `websockets` client through
an upgrade, and headless Chromium loading a page whose script fetches JSON
by XHR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile

from websockets.sync.client import connect

from harness import Fail, check, clean_env, expect, find_chromium, new_id

MIB = 1024 * 1024
WS_PATH = "/ws/echo?room=conformance&x=1"


def ws_connect(world):
    return connect(
        world.url("ws", WS_PATH, scheme="ws"),
        proxy=None,  # never an environment proxy: this is 127.0.0.1
        max_size=8 * MIB,
        open_timeout=15,
        close_timeout=5,
        compression=None,
    )


@check("websocket_echo")
def websocket_echo(world):
    """A WebSocket through the proxy: a text message and a 1 MiB binary
    message come back intact."""
    payload = os.urandom(MIB)
    with ws_connect(world) as ws:
        json.loads(ws.recv(timeout=15))  # the server's hello
        ws.send("hello, conformance")
        got = ws.recv(timeout=15)
        expect(got == "hello, conformance", f"text echo {got!r}")
        ws.send(payload)
        got = ws.recv(timeout=30)
        expect(
            isinstance(got, bytes) and got == payload,
            f"binary echo: {type(got).__name__} of {len(got)} bytes, {'same' if got == payload else 'different'}",
        )


@check("origin_form_websocket")
def origin_form_websocket(world):
    """The upgrade request reaches the websockets server in origin-form: the
    path it saw is exactly `/ws/echo?room=conformance&x=1`."""
    with ws_connect(world) as ws:
        hello = json.loads(ws.recv(timeout=15))
    expect(hello["path"] == WS_PATH, f"the websockets server saw {hello['path']!r}")


def run_chromium(browser: str, url: str, profile: str) -> subprocess.CompletedProcess:
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--no-proxy-server", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--dump-dom", url,
    ]  # fmt: skip
    # A session of its own, so that on a timeout its helper processes go too.
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(), start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise Fail("chromium did not finish within 90 s") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@check("chromium_xhr_page", timeout=120)
def chromium_xhr_page(world):
    """Headless Chromium loads the Node page through the proxy; the page's
    script fetches JSON by XHR (through the proxy too) and writes the marker
    from it into the DOM, which --dump-dom shows."""
    browser = find_chromium()
    expect(browser, "chromium not found")
    token = new_id()
    with tempfile.TemporaryDirectory(dir=world.tmp, prefix="chromium-") as profile:
        r = run_chromium(browser, world.url("node", f"/node/page.html?token={token}"), profile)
    dom = r.stdout.decode(errors="replace")
    marker = f'<div id="result">200 conformance-xhr-ok-{token}</div>'
    if marker not in dom:
        result = dom.split('id="result">')[1][:120] if 'id="result">' in dom else "no result element"
        raise Fail(
            f"the DOM lacks the XHR marker ({result}); chromium exited {r.returncode}: "
            f"{r.stderr.decode(errors='replace')[-300:]}"
        )
    if not world.direct:
        xhr = world.wait_access(lambda v: v.get("path") == f"/node/data.json?token={token}", timeout=5)
        expect(xhr is not None, "the XHR is not in the proxy's access log")
