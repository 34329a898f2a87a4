#!/usr/bin/env bash
# Installs what xsnoop needs on a fresh Debian 12 machine. Idempotent, and fast when all is there:
# it only calls apt-get when a package is missing.
#   clang, libbpf-dev, gcc-multilib  build the XDP classifier (ebpf/) with clang -target bpf
#   tshark                           decodes the frames xsnoop emits (the codec cross-check test)
#   netsniff-ng (mausezahn), tcpdump traffic generation and captures in functional tests
#   iproute2, ethtool, jq            network namespaces, veth pairs, NIC settings, JSON in scripts
#   iputils-ping                     the unicast end-to-end test pings through the switch
#   bpftool                          the ageing test reads the kernel fast path's station map
set -euo pipefail

PACKAGES=(clang libbpf-dev gcc-multilib tshark netsniff-ng tcpdump iproute2 ethtool jq iputils-ping bpftool)

# shellcheck source=scripts/apt-missing.sh
. "$(dirname "$0")/apt-missing.sh"
if [[ $(id -u) -eq 0 ]]; then
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
fi
apt_install_missing deps "${PACKAGES[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
