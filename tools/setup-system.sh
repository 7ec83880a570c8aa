#!/usr/bin/env bash
# Installs the system packages swarm-node needs, when run as root with apt; otherwise says what is missing.
# gcc + libgmp-dev: libp2p's fastecdsa builds from source. dataset-fashion-mnist: the real data set.
# nodejs + npm: the pinned js-ipfs test daemon (tools/ipfs). iproute2 + util-linux: loopback-only test namespace.
# docker-compose + shellcheck: static validation of docker/ (no engine needed).
set -euo pipefail
need=()
for pkg in gcc libgmp-dev dataset-fashion-mnist iproute2 util-linux nftables docker-compose shellcheck; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing system packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "setup: missing system packages: ${need[*]}" >&2
  echo "setup: install them (Debian/Ubuntu: sudo apt-get install ${need[*]}) and run make again" >&2
  exit 1
fi
