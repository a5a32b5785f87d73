# Shared by the scripts: package checks and messages. Source it, do not run it.

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# Installs the Debian packages that are missing (apt-get, as root or through sudo).
ensure_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing packages ${missing[*]}: run as root or install sudo"
    sudo="sudo"
  fi
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq >/dev/null || die "apt-get update failed (offline?): install ${missing[*]} by hand"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# The system packages lmtrain builds and runs with.
ensure_lmtrain_packages() {
  ensure_packages libopenblas-dev zlib1g-dev pkg-config libopenmpi-dev openmpi-bin bible-kjv bible-kjv-text
  command -v swift >/dev/null || die "no Swift toolchain on PATH: install Swift 6 from swift.org"
}
