#!/bin/sh
# Installs the Debian packages memray-c needs that are missing.
set -e
pkgs="build-essential libunwind-dev libarchive-dev libdw-dev libelf-dev zlib1g-dev libzstd-dev
bats bats-support bats-assert python3 binutils gzip zstd xz-utils bzip2
mandoc bsdextrautils util-linux heaptrack python3-numpy chromium bc time clang libpython3.11-testsuite sqlite3 git tmux gdb python3-pytest
golang-go python3-jsonschema debootstrap
python3-dev python3-setuptools python3-wheel python3-build python3-venv python3-pip
python3-exceptiongroup python3-tomli python3-ipykernel python3-nbconvert jupyter-nbconvert unzip"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && { echo "deps: all installed"; exit 0; }
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
