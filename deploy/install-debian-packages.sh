#!/bin/sh
# Install the Debian packages named as arguments that are not installed yet (root; no-op when
# all are there). Used by the Makefile so that a fresh machine needs no manual step.
set -eu
missing=""
for package in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $package"
  fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing Debian packages:$missing (run as root, or install them)" >&2
  exit 1
fi
echo "installing Debian packages:$missing"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
