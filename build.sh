#!/usr/bin/env bash
# Virtuozzo.Sdk build entry point.
#   ./build.sh build   install prerequisites, build everything, publish the vzsdk tool to artifacts/vzsdk/vzsdk
#   ./build.sh demo    build, then run the samples (a tour of the SDK on this machine, ending with live migration there and back)
#   ./build.sh panel   build, then start the hosting-panel sample on http://127.0.0.1:5080 (prints the generated admin password once)
#   ./build.sh test    build, then run every unit and integration test, the docs build and the consumer check;
#                      ends with "N passed, N failed"
#   ./build.sh docs    build the documentation site with the API reference (DocFX, warnings as errors) into docs/_site
#   ./build.sh snippets  copy the samples' #region Snippet: blocks into the articles' code blocks
#   ./build.sh consumer  pack, then build and run the getting-started program in a new console project against the packages
#   ./build.sh pack    build the seven NuGet packages (and symbol packages) into artifacts/packages
#   ./build.sh bench   build, then run the benchmarks (they compare the SDK with qemu-img and runc)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
CONFIG=${CONFIG:-Release}
export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

# Debian packages the SDK's local runtime, its tests and its benchmarks use.
APT_PACKAGES=(
  runc qemu-utils qemu-system-x86 qemu-system-common busybox-static openssh-server openssh-client
  kmod cpio criu e2fsprogs iproute2 iputils-ping iptables fuse3 util-linux procps tar ca-certificates
  clang lld zlib1g-dev rsync debootstrap chromium libvirt-daemon-system libvirt-clients libvirt0
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

ensure_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else die "missing Debian packages (${missing[*]}); run as root or install them"; fi
  else
    SUDO=
  fi
  log "installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# CRIU 4.x for container checkpoint/restore and live migration. Debian 12's criu 3.17 fails `criu check` on current
# kernels (vDSO); Debian 13's 4.1.1 works. It is unpacked with the libraries it needs (Debian 13's libc included) into a
# private prefix and run through that prefix's dynamic loader, so the system's libc and sources are untouched: apt reads
# a temporary sources list given by option. The SDK finds it at $CRIU_PREFIX/criu (or wherever $VZSDK_CRIU says).
CRIU_PREFIX=${CRIU_PREFIX:-/opt/vzsdk/criu}
ensure_criu() {
  if [ -x "$CRIU_PREFIX/criu" ] && "$CRIU_PREFIX/criu" check >/dev/null 2>&1; then return 0; fi
  [ "$(id -u)" -eq 0 ] || { log "CRIU 4 is missing and installing it needs root: container checkpoint tests will fail"; return 0; }
  log "installing CRIU 4.1 from Debian 13 into $CRIU_PREFIX (a private prefix: the system is not changed)"
  local tmp; tmp=$(mktemp -d /tmp/vzsdk-criu.XXXXXX)
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$tmp/sources.list"
  local apto=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache" -o Dir::State::Status=/dev/null -o APT::Sandbox::User=root)
  apt-get "${apto[@]}" update -qq
  local pkgs
  pkgs=$(apt-cache "${apto[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances --no-pre-depends criu | grep -v '^[ <]' | sort -u)
  # shellcheck disable=SC2086
  (cd "$tmp/debs" && apt-get "${apto[@]}" download -qq $pkgs)
  rm -rf "$CRIU_PREFIX.new"; mkdir -p "$CRIU_PREFIX.new"
  for d in "$tmp"/debs/*.deb; do dpkg-deb -x "$d" "$CRIU_PREFIX.new"; done
  printf '#!/bin/sh\nexec %s/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path %s/usr/lib/x86_64-linux-gnu %s/usr/sbin/criu "$@"\n' \
    "$CRIU_PREFIX" "$CRIU_PREFIX" "$CRIU_PREFIX" >"$CRIU_PREFIX.new/criu"
  chmod +x "$CRIU_PREFIX.new/criu"
  rm -rf "$CRIU_PREFIX"; mv "$CRIU_PREFIX.new" "$CRIU_PREFIX"; rm -rf "$tmp"
  "$CRIU_PREFIX/criu" check >/dev/null 2>&1 || log "warning: $CRIU_PREFIX/criu check fails on this kernel"
}

ensure_dotnet() {
  command -v dotnet >/dev/null 2>&1 || die "the .NET SDK 10 is required (dotnet on PATH); see https://learn.microsoft.com/dotnet/core/install/linux-debian"
}

# libvirtd for the libvirt runtime's tests and samples. These machines have no systemd, so the daemons are started by hand
# when they do not answer. /dev/kvm gets the group udev gives it on a normal Debian host (root:kvm 0660): without it,
# libvirt sees KVM as unusable for its qemu user while its probe finds KVM, and it re-probes QEMU on every call (4 s each).
ensure_libvirtd() {
  [ "$(id -u)" -eq 0 ] || return 0
  command -v libvirtd >/dev/null 2>&1 || return 0
  if [ -c /dev/kvm ] && getent group kvm >/dev/null; then chgrp kvm /dev/kvm && chmod 660 /dev/kvm; fi
  virsh -c qemu:///system list >/dev/null 2>&1 && return 0
  log "starting virtlogd and libvirtd"
  pgrep -x virtlogd >/dev/null || virtlogd -d
  pgrep -x libvirtd >/dev/null || libvirtd -d
  local i
  for i in $(seq 1 50); do virsh -c qemu:///system list >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "libvirtd did not answer on qemu:///system"
}

setup() {
  ensure_dotnet
  ensure_packages
  case "$(uname -m)" in x86_64) ensure_criu ;; esac
  ensure_libvirtd
}

build() {
  log "building ($CONFIG)"
  dotnet build Virtuozzo.Sdk.sln -c "$CONFIG" -nologo -v quiet -clp:ErrorsOnly
  # Native AOT: the tool is one native executable (no JIT, no runtime to load), so `vzsdk disk info` starts within a
  # few milliseconds of `qemu-img info` (docs/performance.md). It needs clang and lld (APT_PACKAGES) to link.
  local arch
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  log "publishing the vzsdk tool (Native AOT) to artifacts/vzsdk/vzsdk"
  rm -rf artifacts/vzsdk
  dotnet publish samples/Vzsdk/Vzsdk.csproj -c "$CONFIG" -r "linux-$arch" \
    -nologo -v quiet -clp:ErrorsOnly -o artifacts/vzsdk
  # The cgroup v2 probe runs inside the test guest (this machine's memory controller is bound to cgroup v1): Native
  # AOT, so the guest needs only its libc (tests/Virtuozzo.Sdk.CgroupV2Probe, test MemoryCgroupV2Tests).
  log "publishing the cgroup v2 test probe (Native AOT) to artifacts/cgroup-v2-probe"
  rm -rf artifacts/cgroup-v2-probe
  dotnet publish tests/Virtuozzo.Sdk.CgroupV2Probe/Virtuozzo.Sdk.CgroupV2Probe.csproj -c "$CONFIG" -r "linux-$arch" \
    -nologo -v quiet -clp:ErrorsOnly -o artifacts/cgroup-v2-probe
}

run_tests() {
  local results="$ROOT/artifacts/test-results"
  rm -rf "$results"
  mkdir -p "$results"
  local status=0
  log "running tests"
  # The CLI tests run the published Native AOT tool, the executable users get (without this they run vzsdk.dll).
  VZSDK_TOOL="$ROOT/artifacts/vzsdk/vzsdk" VZSDK_CGROUP_PROBE="$ROOT/artifacts/cgroup-v2-probe/cgroup-v2-probe" dotnet test Virtuozzo.Sdk.sln -c "$CONFIG" --no-build -nologo \
    --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results" || status=$?
  local passed=0 failed=0 skipped=0 n
  shopt -s nullglob
  for trx in "$results"/*.trx; do
    local counters
    counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
    n=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); passed=$((passed + ${n:-0}))
    n=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${n:-0}))
    n=$(sed -n 's/.* error="\([0-9]*\)".*/\1/p' <<<"$counters"); failed=$((failed + ${n:-0}))
    n=$(sed -n 's/.* notExecuted="\([0-9]*\)".*/\1/p' <<<"$counters"); skipped=$((skipped + ${n:-0}))
  done
  # A crashed or aborted test run is a failure even when no test reported one.
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; log "the test run failed (exit code $status) without a failed test: see the output above"; fi
  # Two checks that are not xunit tests, each counted as one test in the line below: the documentation site builds
  # with no DocFX warning, and the packed packages build (warnings as errors) and run in a new console project.
  local check
  for check in build_docs consumer_check; do
    if "$check"; then passed=$((passed + 1)); log "check $check: passed"; else failed=$((failed + 1)); log "check $check: FAILED"; fi
  done
  local line="$passed passed, $failed failed"
  [ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
  echo "$line"
  [ "$failed" -eq 0 ]
}

# Rewrites the code blocks of docs/**/*.md from the #region Snippet: blocks of the samples they name
# (docs/tools/snippets.awk); the DocsTests check that they agree.
update_snippets() {
  local md tmp
  while IFS= read -r -d '' md; do
    tmp="$md.snippets.tmp"
    awk -v mddir="$(dirname "$md")" -f docs/tools/snippets.awk "$md" > "$tmp" || { rm -f "$tmp"; die "snippets: $md"; }
    if cmp -s "$md" "$tmp"; then rm -f "$tmp"; else mv "$tmp" "$md"; log "updated $md"; fi
  done < <(find docs -name '*.md' -not -path 'docs/_site/*' -not -path 'docs/api/*' -print0)
}

# The site with the API reference (docfx metadata + build, the docfx tool pinned in .config/dotnet-tools.json),
# warnings as errors, into docs/_site.
build_docs() {
  log "building the documentation site (DocFX, warnings as errors)"
  dotnet tool restore >/dev/null && dotnet docfx docs/docfx.json --warningsAsErrors
}

# The packages as a user gets them (tests/consumer/check.sh): packed, restored into a new console project from a
# local folder feed, built with warnings as errors, run.
consumer_check() { CONFIG="$CONFIG" bash tests/consumer/check.sh; }

cmd=${1:-build}
case "$cmd" in
  build) setup; build ;;
  demo)
    setup; build
    log "running the quick start sample"
    dotnet run --project samples/QuickStart/QuickStart.csproj -c "$CONFIG" --no-build
    log "building the test guest and running the VM sample (boot, exec through the guest tools, memory hotplug, a live backup, delete)"
    guest=$(tests/guest/build-guest.sh | tail -n1)
    vmroot=$(mktemp -d /tmp/vzsdk-demo-vm.XXXXXX)
    dotnet run --project samples/VmSample/VmSample.csproj -c "$CONFIG" -- "$vmroot" "$guest"
    rm -rf "$vmroot"
    if [ "$(id -u)" -eq 0 ]; then
      log "migrating a container and a VM live to a second host and back (samples/migration-demo.sh)"
      samples/migration-demo.sh artifacts/vzsdk/vzsdk "$guest"
    else
      log "skipping the migration demo: it creates network namespaces and runs sshd, which needs root"
    fi
    ;;
  panel)
    setup; build
    # The test guest, when it can be built here, is offered as the VM image "test-guest" (direct kernel boot).
    set --
    if guest=$(tests/guest/build-guest.sh 2>/dev/null | tail -n1) && [ -f "$guest/VMLINUZ" ]; then
      set -- "--Panel:TestGuest:KernelPath=$guest/VMLINUZ" "--Panel:TestGuest:InitrdPath=$guest/INITRD"
    else
      log "the test guest could not be built (tests/guest/build-guest.sh): VMs only from images in Panel:ImagesDirectory"
    fi
    log "starting the hosting-panel sample on http://127.0.0.1:5080 (the first start prints the generated admin password once)"
    exec dotnet run --project samples/HostingPanel/HostingPanel.csproj -c "$CONFIG" --no-build -- --urls http://127.0.0.1:5080 --contentRoot "$PWD/samples/HostingPanel" "$@"
    ;;
  test) setup; build; run_tests ;;
  docs)
    ensure_dotnet
    build_docs
    ;;
  snippets) update_snippets ;;
  consumer) ensure_dotnet; consumer_check ;;
  pack)
    ensure_dotnet
    rm -rf artifacts/packages
    dotnet pack Virtuozzo.Sdk.sln -c "$CONFIG" -nologo -v quiet -clp:ErrorsOnly -o artifacts/packages
    ls -1 artifacts/packages
    ;;
  bench)
    # ./build.sh bench                 every benchmark project, default arguments
    # ./build.sh bench sdk ARGS...     benchmarks/Virtuozzo.Sdk.Benchmarks (containers, backup, vms, BenchmarkDotNet filters)
    # ./build.sh bench qcow2 ARGS...   benchmarks/Virtuozzo.Sdk.Storage.Qcow2.Benchmarks (convert, compression, IOPS vs qemu-img)
    # ./build.sh bench startup [N]     benchmarks/startup.sh: start-up of the published vzsdk against qemu-img, then (root)
    #                                  vzsdk ct start/stop, vm start, list -a against the library calls they wrap
    # ./build.sh bench migration [R]   VM and container live migration to a second host, against qemu-img / rsync copies
    # ./build.sh bench memory [VES]    the memory policies through the simulator (benchmarks/Virtuozzo.Sdk.Benchmarks memory)
    # ./build.sh bench memory real [P] the memory manager for real (3 VMs, 3 containers) under each policy, in turn (root)
    setup; build
    shift || true
    target=${1:-all}
    [ $# -gt 0 ] && shift
    case "$target" in
      all) projects=(benchmarks/*/*.csproj) ;;
      sdk) projects=(benchmarks/Virtuozzo.Sdk.Benchmarks/Virtuozzo.Sdk.Benchmarks.csproj) ;;
      migration) projects=(benchmarks/Virtuozzo.Sdk.Benchmarks/Virtuozzo.Sdk.Benchmarks.csproj); set -- migration "$@" ;;
      qcow2) projects=(benchmarks/Virtuozzo.Sdk.Storage.Qcow2.Benchmarks/*.csproj) ;;
      memory) projects=(benchmarks/Virtuozzo.Sdk.Benchmarks/Virtuozzo.Sdk.Benchmarks.csproj); set -- memory "$@" ;;
      startup) benchmarks/startup.sh "$@"; exit ;;
      *) die "unknown benchmark '$target' (use sdk, qcow2, migration, memory or startup, or nothing for all)" ;;
    esac
    for p in "${projects[@]}"; do
      log "running $p"
      dotnet run --project "$p" -c "$CONFIG" --no-build -- "$@"
    done
    ;;
  *) die "unknown command '$cmd' (use build, demo, test, docs, snippets, consumer, pack or bench)" ;;
esac
