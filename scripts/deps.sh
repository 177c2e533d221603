#!/usr/bin/env bash
# Installs the Debian packages Nexus needs to build and test, if missing.
# Safe to run again: it only calls apt-get when a package is absent.
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libzmq3-dev libczmq-dev libmsgpack-dev
      libseccomp-dev libsqlite3-dev libcmocka-dev libyaml-dev libjansson-dev libcap-dev
      python3 sqlite3 util-linux passwd git)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
