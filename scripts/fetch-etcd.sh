#!/usr/bin/env bash
# Installs etcd-server/etcd-client 3.5.16 from Debian trixie into a cache folder, without root.
#
# Why: bookworm's etcd 3.4.23 has etcd#15220 (progress notifications can precede events), which
# rules out serving consistent reads from the watch cache; trixie's 3.5.16 is fixed. The binaries
# link only libc, so a private apt configuration plus `dpkg -x` is enough.
#
# Idempotent: prints the path of the etcd binary and exits when it is already installed.
# Order of preference: $EDGEWATCH_ETCD_BIN, the cache folder, then a fresh download.
# Where apt is missing it falls back to an `etcd` on PATH and says so.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${EDGEWATCH_CACHE:-"$root/.cache"}
dest="$cache/etcd"
bin="$dest/usr/bin/etcd"

log() { printf 'fetch-etcd: %s\n' "$*" >&2; }

if [ -n "${EDGEWATCH_ETCD_BIN:-}" ]; then
  echo "$EDGEWATCH_ETCD_BIN"; exit 0
fi
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  if command -v etcd >/dev/null 2>&1; then
    log "apt-get/dpkg not found; using the etcd on PATH: $(command -v etcd) ($(etcd --version | head -1))."
    log "edgewatch needs etcd >= 3.5.13 to serve consistent reads from its cache; older ones are served from etcd."
    command -v etcd; exit 0
  fi
  log "no apt-get and no etcd on PATH. Install etcd 3.5.13 or newer (https://etcd.io/docs/latest/install/)"
  log "and put it on PATH, or set EDGEWATCH_ETCD_BIN=/path/to/etcd, or set ETCD_ENDPOINTS to use a running etcd."
  exit 1
fi

uri=""
if [ -r /etc/apt/sources.list.d/debian.sources ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
  uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
fi
uri=${uri:-http://deb.debian.org/debian}

apt_dir="$cache/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$dest"
echo "deb $uri trixie main" > "$apt_dir/sources.list"
opts=(-o "Dir::State=$apt_dir" -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
      -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
: > "$apt_dir/status"
opts+=(-o "Dir::State::status=$apt_dir/status")

log "downloading etcd-server from $uri (trixie) into $dest"
apt-get "${opts[@]}" -qq update >&2
(cd "$apt_dir" && apt-get "${opts[@]}" -qq download etcd-server etcd-client >&2)
for deb in "$apt_dir"/etcd-server_*.deb "$apt_dir"/etcd-client_*.deb; do
  dpkg -x "$deb" "$dest"
done
rm -f "$apt_dir"/*.deb

if ! "$bin" --version >/dev/null 2>&1; then
  log "the downloaded etcd does not run here: $("$bin" --version 2>&1 | head -1)"
  exit 1
fi
log "installed $("$bin" --version | head -1)"
echo "$bin"
