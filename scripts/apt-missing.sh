# Sourced by scripts/deps.sh and scripts/bench-deps.sh: installs the Debian packages of a list
# that are not installed yet, with one apt-get call, and nothing when all are there (so a
# `make test` on a ready machine never touches the network).
#   apt_install_missing TAG PACKAGE...   TAG prefixes the messages and names the make target.

apt_install_missing() {
  local tag=$1
  shift
  local missing=() p
  for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]})) || return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "$tag: missing Debian packages: ${missing[*]}" >&2
    echo "$tag: run 'make $tag' as root (it runs apt-get install)" >&2
    return 1
  fi
  echo "$tag: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
