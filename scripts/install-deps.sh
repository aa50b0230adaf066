#!/usr/bin/env bash
# Installs, with apt-get only, the Debian 12 packages ddpm needs to build, test and run its
# examples. Idempotent: packages already present are not touched, and nothing runs if none is
# missing. Run as root (or with sudo).   Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libeigen3-dev libxtensor-dev xtl-dev libxsimd-dev libtbb-dev doctest-dev
      libstb-dev libgif-dev nlohmann-json3-dev libcli11-dev libbenchmark-dev zlib1g-dev
      "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ddpm: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
