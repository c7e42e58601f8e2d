#!/usr/bin/env bash
# Installs everything the tests need (Debian packages, a PostgreSQL server, a virtualenv
# with the project and its test extras), then runs ruff, mypy and the whole test suite.
# Used as-is by .ci/run. Needs root (or sudo) only for apt-get and starting PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

# Debian packages the tests talk to: knot (real DNS server on loopback), swaks (SMTP client,
# with Net::SSLeay for TLS), opendkim (independent DKIM verifier), dovecot-imapd (reference
# IMAP server), postgresql (second storage backend).
need=()
command -v knotd >/dev/null || need+=(knot)
command -v kdig >/dev/null || need+=(knot-dnsutils)
command -v swaks >/dev/null || need+=(swaks)
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)  # swaks --tls
command -v opendkim >/dev/null || need+=(opendkim)  # independent DKIM verifier in tests
command -v dovecot >/dev/null || need+=(dovecot-imapd)  # reference IMAP server in tests
command -v pg_isready >/dev/null || need+=(postgresql-client)
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
fi
if [ ${#need[@]} -gt 0 ]; then
  # opendkim and dovecot are daemons; the tests run their own throw-away instances, so
  # keep the packages from starting system services (the usual policy-rc.d switch).
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ -n "$policy" ]; then $SUDO rm -f "$policy"; fi
fi

# PostgreSQL at 127.0.0.1:5432 with trust auth for local test databases.
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if ! $SUDO grep -q "mailwarden-tests" "$hba"; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # mailwarden-tests\nhost all all ::1/128 trust # mailwarden-tests' "$hba"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || $SUDO pg_ctlcluster "$ver" main start
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
