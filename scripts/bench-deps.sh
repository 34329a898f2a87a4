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

# shellcheck source=scripts/apt-missing.sh
. "$(dirname "$0")/apt-missing.sh"
apt_install_missing bench-fwd "${PACKAGES[@]}"
