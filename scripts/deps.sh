#!/usr/bin/env bash
# Installs what xsnoop needs on a fresh Debian 12 machine. Idempotent, and fast when all is there:
# it only calls apt-get when a package is missing.
#   clang, libbpf-dev, gcc-multilib  build the XDP classifier (ebpf/) with clang -target bpf
#   tshark                           decodes the frames xsnoop emits (the codec cross-check test)
#   netsniff-ng (mausezahn), tcpdump traffic generation and captures in functional tests
#   iproute2, ethtool, jq            network namespaces, veth pairs, NIC settings, JSON in scripts
#   iputils-ping                     the unicast end-to-end test pings through the switch
set -euo pipefail

PACKAGES=(clang libbpf-dev gcc-multilib tshark netsniff-ng tcpdump iproute2 ethtool jq iputils-ping)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: run 'make deps' as root (it runs apt-get install)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "deps: cargo not found: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
