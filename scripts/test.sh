#!/usr/bin/env bash
# The README's test command: installs what the tests need that cargo cannot (Debian's
# nats-server, for the NATS JetStream tests, which fail rather than skip without it), then
# runs the whole workspace's tests. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "installing nats-server (Debian package) for the NATS tests" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nats-server >/dev/null
fi

exec cargo test --workspace "$@"
