#!/usr/bin/env bash
# Start-up of the vzsdk tool against qemu-img: each command runs ROUNDS times, the tools alternating, and the median
# wall time of each is printed (bash's EPOCHREALTIME around a fork+exec; the loop's own cost is under 1 ms).
#   benchmarks/startup.sh [ROUNDS] [VZSDK]     (./build.sh bench startup [ROUNDS])
# Then, as root, the lifecycle verbs against the library calls they wrap (vzsdk ct start / ct stop / vm start / list -a,
# tool vs library per verb, alternating; benchmarks/Virtuozzo.Sdk.Benchmarks `verbs`, built Release): VERBS_ROUNDS
# rounds (default 15), VERBS=0 to skip.
set -euo pipefail
rounds=${1:-40}
vzsdk=${2:-artifacts/vzsdk/vzsdk}
[ -x "$vzsdk" ] || { echo "startup.sh: $vzsdk is not an executable: run ./build.sh build" >&2; exit 1; }
command -v qemu-img >/dev/null || { echo "startup.sh: qemu-img is required" >&2; exit 1; }
work=$(mktemp -d /tmp/vzsdk-startup.XXXXXX)
trap 'rm -rf "$work"' EXIT
img=$work/img.qcow2
qemu-img create -q -f qcow2 "$img" 64M
qemu-io -c "write -P 0x5a 0 8M" "$img" >/dev/null

declare -A times
run() { # run NAME COMMAND...: one timed run, appended to times[NAME]
  local name=$1; shift
  local t0=$EPOCHREALTIME
  "$@" >/dev/null 2>&1
  local t1=$EPOCHREALTIME
  times[$name]+="$(( (${t1/./} - ${t0/./}) )) "
}
median_ms() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f ms", m / 1000}'; }

# One warm-up run of each, not counted.
"$vzsdk" --version >/dev/null; "$vzsdk" disk info "$img" >/dev/null; qemu-img info "$img" >/dev/null
for _ in $(seq "$rounds"); do
  run "vzsdk --version" "$vzsdk" --version
  run "vzsdk disk info" "$vzsdk" disk info "$img"
  run "qemu-img info" qemu-img info "$img"
  rm -f "$work/out.raw"; run "vzsdk disk convert" "$vzsdk" disk convert -t unsafe -O raw "$img" "$work/out.raw"
  rm -f "$work/out.raw"; run "qemu-img convert" qemu-img convert -t unsafe -O raw "$img" "$work/out.raw"
done
echo "median of $rounds alternating runs; $(nproc) CPUs, $(uname -r), $(qemu-img --version | head -1)"
printf '%-22s %s\n' "vzsdk --version" "$(median_ms "${times[vzsdk --version]}")"
printf '%-22s %-12s %s\n' "disk info IMG" "$(median_ms "${times[vzsdk disk info]}")" "qemu-img: $(median_ms "${times[qemu-img info]}")"
printf '%-22s %-12s %s\n' "convert -O raw IMG" "$(median_ms "${times[vzsdk disk convert]}")" "qemu-img: $(median_ms "${times[qemu-img convert]}")"

if [ "${VERBS:-1}" != 0 ] && [ "$(id -u)" = 0 ]; then
  dotnet run --project benchmarks/Virtuozzo.Sdk.Benchmarks -c Release --no-build -- verbs "${VERBS_ROUNDS:-15}" "$vzsdk"
fi
