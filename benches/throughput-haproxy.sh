#!/usr/bin/env bash
# Installs HAProxy (not in CI) and runs the throughput bench, which then
# measures HAProxy in TCP mode beside the streamlets.
#   sudo bash benches/throughput-haproxy.sh [--seconds S]
set -euo pipefail
if ! command -v haproxy >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null
fi
cd "$(dirname "$0")/.."
exec cargo bench --bench throughput -- "$@"
