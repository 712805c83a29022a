#!/usr/bin/env bash
# Start the servers the tests use (PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379) when they
# are not already answering; install them from Debian's packages when they are missing.
# Also install what the browser test of the supervisor's page needs when missing: Debian's
# Chromium (driven by Playwright through its executable; no browser is downloaded) and a
# CJK font (fonts-wqy-zenhei), so Chinese hall names render as glyphs.
# Idempotent; prints what it did. Needs root (or sudo) only when it has to install or start.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

# --- Redis ---------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "services: installing redis-server"
  apt_install redis-server
fi
if ! redis_up; then
  echo "services: starting Redis on 127.0.0.1:6379"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis_up && break; sleep 0.2; done
fi
redis_up && echo "services: Redis ok" || { echo "services: Redis did not start" >&2; exit 1; }

# --- PostgreSQL ----------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null; then
  echo "services: installing postgresql"
  apt_install postgresql
fi
if ! pg_up; then
  echo "services: starting PostgreSQL"
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  if [ -z "$ver" ]; then
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    $SUDO pg_createcluster "$ver" main >/dev/null
  fi
  conf="/etc/postgresql/$ver/main"
  # Local test server: trust on loopback, like the workplace machines.
  if ! grep -q "integrity-tests" "$conf/pg_hba.conf" 2>/dev/null; then
    $SUDO sed -i '1i host all all 127.0.0.1/32 trust # integrity-tests\nhost all all ::1/128 trust # integrity-tests\nlocal all all trust # integrity-tests' "$conf/pg_hba.conf"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  for _ in $(seq 50); do pg_up && break; sleep 0.2; done
fi
pg_up && echo "services: PostgreSQL ok" || { echo "services: PostgreSQL did not start" >&2; exit 1; }

# --- Chromium and a CJK font (tests/browser) ------------------------------------------
if ! command -v chromium >/dev/null; then
  echo "services: installing chromium"
  apt_install chromium
fi
if ! command -v fc-list >/dev/null || [ -z "$(fc-list :lang=zh family 2>/dev/null)" ]; then
  echo "services: installing a CJK font (fonts-wqy-zenhei)"
  apt_install fontconfig fonts-wqy-zenhei
fi
echo "services: $(chromium --version 2>/dev/null || echo 'chromium missing'); CJK font: $(fc-list :lang=zh family 2>/dev/null | head -1)"
