# Shared by scripts/demo and scripts/test: install what is missing, then build.
# Both are idempotent: a second run installs nothing and rebuilds only what changed.

# Debian 12 packages: build tools and libraries.
OCIFS_BUILD_PACKAGES=(
  meson ninja-build pkg-config g++
  fuse3 libfuse3-dev libcurl4-openssl-dev libarchive-dev libzstd-dev zlib1g-dev libisal-dev
  nlohmann-json3-dev libssl-dev catch2 libcli11-dev libfmt-dev libspdlog-dev libtomlplusplus-dev
)
# What the demo and the tests run: image tools, a static busybox for chroot, xattr tools;
# a real registry (distribution 2.8.2), bcrypt htpasswd, a JWT issuer's libraries and curl for
# the registry tests (tests/integration/registry.py); QEMU, a Debian kernel with 9p modules, cpio,
# kmod and debootstrap for the VM and writable-root tests (tests/integration/vm_suite.py).
OCIFS_TOOL_PACKAGES=(
  umoci skopeo busybox-static attr libcap2-bin python3 zstd gzip tar util-linux
  docker-registry apache2-utils python3-jwt python3-cryptography curl openssl
  containerd stargz-snapshotter
  qemu-system-x86 linux-image-amd64 cpio kmod xz-utils debootstrap
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "ocifs: need root to run: $*" >&2; return 1; fi
}

ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "ocifs: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# build_ocifs BUILDDIR [meson setup options...]
build_ocifs() {
  local builddir=$1
  shift
  if [ -f "$builddir/build.ninja" ]; then
    meson setup --reconfigure "$builddir" "$@" >/dev/null
  else
    meson setup "$builddir" --buildtype=debugoptimized "$@"
  fi
  meson compile -C "$builddir"
}

# What the ASan build needs on top of the build packages: clang and its libFuzzer/sanitizer runtimes.
OCIFS_FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)

# One ASan + UBSan build serves scripts/test --sanitize=address,undefined and scripts/fuzz (CI
# builds the core once for both): clang, as libFuzzer is clang's; the core with coverage for the
# fuzz targets (-fsanitize=fuzzer-no-link; the other executables link without libFuzzer); every
# UB fatal; libstdc++'s bounds checks on. -O1 and line tables only, as OSS-Fuzz builds: reports
# keep file:line, with smaller objects than -O2 -g (not a faster build: clang's front end takes
# most of its 12 minutes here either way).
OCIFS_ASAN_BUILD=build-asan
OCIFS_ASAN_SETUP=(-Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
  "-Dcpp_args=['-fsanitize=fuzzer-no-link','-fno-sanitize-recover=all','-D_GLIBCXX_ASSERTIONS','-O1','-gline-tables-only']")

# configure_asan: sets up (or reconfigures) $OCIFS_ASAN_BUILD with clang; a directory configured
# with another compiler (an older build-asan made by g++) is wiped first.
configure_asan() {
  local builddir=$OCIFS_ASAN_BUILD
  if [ -f "$builddir/build.ninja" ] && ! grep -q 'clang++' "$builddir/build.ninja"; then
    echo "ocifs: $builddir was configured with another compiler: wiping it for clang"
    rm -rf "$builddir"
  fi
  if [ -f "$builddir/build.ninja" ]; then
    # `meson configure`, not `setup --reconfigure`: meson 1.0 keeps the old cpp_args on a reconfigure.
    meson configure "$builddir" "${OCIFS_ASAN_SETUP[@]}" >/dev/null
  else
    CC=clang-14 CXX=clang++-14 meson setup "$builddir" --buildtype=debugoptimized "${OCIFS_ASAN_SETUP[@]}"
  fi
}
