#!/usr/bin/env bash
# Install everything the testbed needs on Debian 12, as root: the Debian packages (only
# those missing) and a virtualenv in .venv with the pinned Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    mininet openvswitch-switch libusrsctp2 tshark tcpdump iproute2 iptables nftables
    ethtool net-tools iputils-ping procps graphviz gcc libnetfilter-queue-dev
    rsplib-registrar rsplib-services rsplib-tools
    python3 python3-dev python3-venv python3-pip
)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "install: Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
echo "install: done ($(.venv/bin/python --version), .venv/bin/testbed)"
