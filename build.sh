#!/usr/bin/env bash
# Virtuozzo.Sdk build entry point.
#   ./build.sh build   install prerequisites, build everything, publish the vzsdk tool to artifacts/vzsdk/vzsdk
#   ./build.sh demo    build, then run the main sample (a tour of the SDK on this machine)
#   ./build.sh test    build, then run every unit and integration test; ends with "N passed, N failed"
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

ensure_dotnet() {
  command -v dotnet >/dev/null 2>&1 || die "the .NET SDK 10 is required (dotnet on PATH); see https://learn.microsoft.com/dotnet/core/install/linux-debian"
}

setup() {
  ensure_dotnet
  ensure_packages
}

build() {
  log "building ($CONFIG)"
  dotnet build Virtuozzo.Sdk.sln -c "$CONFIG" -nologo -v quiet -clp:ErrorsOnly
  # Self-contained composite ReadyToRun: the runtime, the framework and the tool compiled ahead of time into
  # one image, so that generic code over the tool's own types is not jitted at start-up. `vzsdk disk convert`
  # of a small image takes ~47 ms this way and ~57 ms as a framework-dependent ReadyToRun build (qemu-img: 10 ms);
  # scripts call it once per disk (docs/performance.md). The publish takes about a minute longer.
  local arch
  case "$(uname -m)" in x86_64) arch=x64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  log "publishing the vzsdk tool (self-contained, composite ReadyToRun) to artifacts/vzsdk/vzsdk"
  rm -rf artifacts/vzsdk
  dotnet publish samples/Vzsdk/Vzsdk.csproj -c "$CONFIG" -r "linux-$arch" --self-contained true \
    -p:PublishReadyToRun=true -p:PublishReadyToRunComposite=true \
    -nologo -v quiet -clp:ErrorsOnly -o artifacts/vzsdk
}

run_tests() {
  local results="$ROOT/artifacts/test-results"
  rm -rf "$results"
  mkdir -p "$results"
  local status=0
  log "running tests"
  dotnet test Virtuozzo.Sdk.sln -c "$CONFIG" --no-build -nologo \
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
  local line="$passed passed, $failed failed"
  [ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
  echo "$line"
  [ "$failed" -eq 0 ]
}

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
    ;;
  test) setup; build; run_tests ;;
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
    # ./build.sh bench memory [VES]    the memory policies through the simulator (benchmarks/Virtuozzo.Sdk.Benchmarks memory)
    setup; build
    shift || true
    target=${1:-all}
    [ $# -gt 0 ] && shift
    case "$target" in
      all) projects=(benchmarks/*/*.csproj) ;;
      sdk) projects=(benchmarks/Virtuozzo.Sdk.Benchmarks/Virtuozzo.Sdk.Benchmarks.csproj) ;;
      qcow2) projects=(benchmarks/Virtuozzo.Sdk.Storage.Qcow2.Benchmarks/*.csproj) ;;
      memory) projects=(benchmarks/Virtuozzo.Sdk.Benchmarks/Virtuozzo.Sdk.Benchmarks.csproj); set -- memory "$@" ;;
      *) die "unknown benchmark '$target' (use sdk, qcow2 or memory, or nothing for all)" ;;
    esac
    for p in "${projects[@]}"; do
      log "running $p"
      dotnet run --project "$p" -c "$CONFIG" --no-build -- "$@"
    done
    ;;
  *) die "unknown command '$cmd' (use build, demo, test, pack or bench)" ;;
esac
