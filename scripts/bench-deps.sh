#!/usr/bin/env bash
# Installs what `make bench-fwd` needs beyond scripts/deps.sh: the AF_XDP C forwarder
# (bench/afxdp-fwd/) links libxdp (<xdp/xsk.h>: UMEM and socket rings) and libbpf (loading and
# attaching its XDP program). Not part of `make test`: the test suite never needs libxdp.
# Idempotent, and fast when all is there: it only calls apt-get when a package is missing.
#   libxdp-dev, libbpf-dev   headers and libraries of the forwarder
#   clang                    compiles its XDP program (-target bpf)
#   gcc                      compiles the forwarder itself (cc)
#   pkg-config               finds libxdp's and libbpf's flags
set -euo pipefail

PACKAGES=(libxdp-dev libbpf-dev clang gcc pkg-config)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench-deps: missing Debian packages: ${missing[*]}" >&2
    echo "bench-deps: run 'make bench-fwd' as root (it runs apt-get install)" >&2
    exit 1
  fi
  echo "bench-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
