#!/usr/bin/env bash
# Installs what tests/conformance/suite.py needs, on Debian, as root:
#   apt: nghttp2-client (h2load), chromium, curl
#   pip: requirements.txt (httpbin, gunicorn, h2, websockets, pinned)
# Node.js is expected on the machine already (/usr/bin/node; only its
# built-in `http` module is used, no npm packages).
# Idempotent: what is there already is not installed again.
set -euo pipefail
cd "$(dirname "$0")"

apt_needed=()
command -v h2load >/dev/null 2>&1 || apt_needed+=(nghttp2-client)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || apt_needed+=(chromium)
command -v curl >/dev/null 2>&1 || apt_needed+=(curl)
if [ "${#apt_needed[@]}" -gt 0 ]; then
  echo "conformance setup: apt-get install ${apt_needed[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi

command -v node >/dev/null 2>&1 || { echo "conformance setup: node is missing (expected at /usr/bin/node)" >&2; exit 1; }

PY="${PYTHON:-python3}"
"$PY" - <<'PYEOF'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"conformance setup: Python 3.11+ needed, {sys.version.split()[0]} found")
PYEOF

if ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "conformance setup: apt-get install python3-pip"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
fi

pip_flags=(-q --disable-pip-version-check --root-user-action=ignore)
# A Debian-managed interpreter (PEP 668) refuses plain pip installs.
if "$PY" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  pip_flags+=(--break-system-packages)
fi
"$PY" -m pip install "${pip_flags[@]}" -r requirements.txt

"$PY" suite.py --check-deps
echo "conformance setup: done"
