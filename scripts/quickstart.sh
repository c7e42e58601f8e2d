#!/usr/bin/env bash
# Installs mailwarden into .venv and runs it on the embedded default: SQLite, a self-signed
# certificate, every listener on 127.0.0.1 at unprivileged ports (MX on 2525). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q .
if [ ! -f mailwarden.yaml ]; then
  .venv/bin/mailwarden init --hostname "${MAILWARDEN_HOSTNAME:-mail.example.test}" --data-dir ./data
fi
exec .venv/bin/mailwarden run --config mailwarden.yaml
