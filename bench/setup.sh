#!/usr/bin/env bash
# Installs what bench/run.py needs, idempotently (Debian, run as root):
#   nginx (origin + peer), wrk (throughput), oha (fixed-rate latency),
#   taskset/curl/python3 (normally already there).
# The Debian nginx service is never used (and may not start: policy-rc.d); run.py
# starts its own instances with its own configs under --rundir.
#
#   bash bench/setup.sh                 # everything
#   BENCH_WITH_PEERS=1 bash bench/setup.sh   # also haproxy + caddy (optional peers)
#
# If oha cannot be built, everything else still works: run.py then skips the
# `latency` scenario with a message (or run with --scenarios that omit it).
set -euo pipefail

need_apt=()
command -v nginx   >/dev/null 2>&1 || need_apt+=(nginx)
command -v wrk     >/dev/null 2>&1 || need_apt+=(wrk)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
command -v curl    >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ "${BENCH_WITH_PEERS:-0}" = 1 ]; then
    command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
    command -v caddy   >/dev/null 2>&1 || need_apt+=(caddy)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Services may fail to start in a container (policy-rc.d exits 101): that is fine,
    # the bench never uses them.
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" || {
        # a failed postinst (service start) leaves the binary installed; check what matters
        for b in nginx wrk; do command -v "$b" >/dev/null 2>&1 || { echo "setup: $b still missing" >&2; exit 1; }; done
    }
else
    echo "setup: nginx, wrk, taskset, curl already installed"
fi

# oha: fixed-rate load with latency percentiles (the `latency` scenario).
export PATH="$HOME/.cargo/bin:$PATH"
if command -v oha >/dev/null 2>&1; then
    echo "setup: oha already installed ($(oha --version 2>/dev/null | head -1))"
elif ! command -v cargo >/dev/null 2>&1; then
    echo "setup: WARNING: cargo not found, cannot install oha; the latency scenario will be skipped" >&2
else
    # (oha 1.16 does not compile with --no-default-features, so take the defaults.)
    echo "setup: cargo install oha --locked (about 5 min on 2 cores)"
    nice -n 10 cargo install oha --locked || {
        echo "setup: WARNING: oha failed to build; run.py will skip the latency scenario" >&2
        echo "       (the rest of the bench works without it; retry: cargo install oha --locked)" >&2
    }
fi

echo "setup: versions"
nginx -v 2>&1 | sed 's/^/  /'
wrk -v 2>&1 | head -1 | sed 's/^/  /' || true
command -v oha >/dev/null 2>&1 && oha --version | sed 's/^/  /' || echo "  oha: missing"
echo "setup: done"
