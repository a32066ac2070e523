#!/usr/bin/env bash
# The README's test command: installs what the tests need that cargo cannot (Debian's
# nats-server and man-db), then runs the whole workspace's tests. Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests run beside cargo: nats-server (the NATS JetStream tests fail rather
# than skip without it) and man-db (`man -l` renders the generated man page).
missing=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v man >/dev/null 2>&1 || missing+=(man-db)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages) for the tests" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

exec cargo test --workspace "$@"
