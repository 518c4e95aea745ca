#!/usr/bin/env bash
# Live migration, there and back, between two hosts on this machine — what ./build.sh demo ends with.
#
# host1 is this machine's own network with one data root; host2 is a network namespace (reached over a veth pair)
# with a private mount namespace, its own data root and /run/netns. Each host runs an sshd; in each host's SSH
# sessions the other host's data root is covered by an empty tmpfs, so disks, memory and processes can only travel
# over the network. A container and a VM are created on host1, migrated live to host2 with `vzsdk migrate`, and
# migrated back by running `vzsdk migrate` on host2 (over SSH), as an administrator would on two nodes.
#
#   samples/migration-demo.sh VZSDK GUEST_DIR      (run as root; ./build.sh demo passes both)
set -euo pipefail
VZ=$(readlink -f "$1"); GUEST=$(readlink -f "$2")
S=$(printf '%04x' $((RANDOM)))
NS=vzdemo-$S; A=vzdm${S}a; B=vzdm${S}b; IP1=10.214.9.1; IP2=10.214.9.2
W=$(mktemp -d /tmp/vzdemo.XXXXXX); H1=/tmp/vzd1-$S; H2=/tmp/vzd2-$S
mkdir -p "$H1" "$H2"
step() { printf '\n==> %s\n' "$*"; }
cleanup() {
  set +e
  for h in "$H1" "$H2"; do for v in demo-ct demo-vm; do "$VZ" --data-root "$h" delete "$v" >/dev/null 2>&1; done; done
  [ -f "$W/sshd1.pid" ] && kill "$(cat "$W/sshd1.pid")" 2>/dev/null
  [ -f "$W/sshd2.pid" ] && kill "$(cat "$W/sshd2.pid")" 2>/dev/null
  sleep 0.5; ip link del "$A" 2>/dev/null; ip netns del "$NS" 2>/dev/null
  rm -rf "$W" "$H1" "$H2"
}
trap cleanup EXIT

step "setting up host2: network namespace $NS ($IP2), reached from host1 ($IP1) over a veth pair"
ip netns add "$NS"
ip link add "$A" type veth peer name "$B"
ip link set "$B" netns "$NS"
ip addr add "$IP1/24" dev "$A"; ip link set "$A" up
ip -n "$NS" addr add "$IP2/24" dev "$B"; ip -n "$NS" link set "$B" up; ip -n "$NS" link set lo up

ssh-keygen -q -t ed25519 -N '' -f "$W/host_key"; ssh-keygen -q -t ed25519 -N '' -f "$W/key"
cp "$W/key.pub" "$W/authorized_keys"
{ echo "$IP1 $(cut -d' ' -f1,2 "$W/host_key.pub")"; echo "$IP2 $(cut -d' ' -f1,2 "$W/host_key.pub")"; } >"$W/known_hosts"
for n in 1 2; do
  ip=$IP1; root=$H1; [ $n = 2 ] && { ip=$IP2; root=$H2; }
  cat >"$W/sshd$n.conf" <<CONF
Port 22
ListenAddress $ip
HostKey $W/host_key
AuthorizedKeysFile $W/authorized_keys
PidFile $W/sshd$n.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
StrictModes no
SetEnv VZSDK_DATA_ROOT=$root
CONF
done
mkdir -p /run/sshd
# host1's sessions do not see host2's data root; host2's sessions (in its namespaces) do not see host1's.
unshare --mount --propagation private sh -c "mount -t tmpfs -o size=1m hidden '$H2' && exec /usr/sbin/sshd -f '$W/sshd1.conf'"
nsenter --net=/var/run/netns/"$NS" unshare --mount --propagation private sh -c "
  set -e; mkdir -p '$W/cg'; mount --rbind /sys/fs/cgroup '$W/cg'; mount -t sysfs sysfs /sys; mount --rbind '$W/cg' /sys/fs/cgroup; umount -l '$W/cg'
  mount -t tmpfs -o size=1m hidden '$H1'; mkdir -p /run/netns; mount -t tmpfs -o size=1m netns /run/netns
  exec /usr/sbin/sshd -f '$W/sshd2.conf'"
for i in $(seq 50); do [ -f "$W/sshd1.pid" ] && [ -f "$W/sshd2.pid" ] && break; sleep 0.1; done
ssh_h2() { ssh -i "$W/key" -o UserKnownHostsFile="$W/known_hosts" -o BatchMode=yes "root@$IP2" "$@"; }
MIG=(-i "$W/key" --known-hosts "$W/known_hosts" --remote-vzsdk "$VZ")

step "host1: a container (10.209.0.250; privileged: CRIU restores only those with runc 1.1) and a VM, both running, each counting in memory"
"$VZ" --data-root "$H1" ct create demo-ct --ipadd 10.209.0.250/24 --diskspace 256M --privileged | tail -n1 >/dev/null
"$VZ" --data-root "$H1" ct start demo-ct
"$VZ" --data-root "$H1" ct exec demo-ct --shell -- "setsid sh -c 'i=0; while true; do i=\$((i+1)); echo \$i > /tmp/counter; sleep 0.1; done' </dev/null >/dev/null 2>&1 &"
"$VZ" --data-root "$H1" vm create demo-vm --memsize 512M --network user --kernel "$GUEST/VMLINUZ" --initrd "$GUEST/INITRD" \
  --append "console=ttyS0 panic=-1" | tail -n1 >/dev/null
"$VZ" --data-root "$H1" vm start demo-vm
for i in $(seq 120); do "$VZ" --data-root "$H1" vm exec demo-vm -- /bin/true >/dev/null 2>&1 && break; sleep 1; done
"$VZ" --data-root "$H1" vm exec demo-vm --shell -- "setsid sh -c 'i=0; while true; do i=\$((i+1)); echo \$i > /run/counter; sleep 0.1; done' </dev/null >/dev/null 2>&1 &"
sleep 1
"$VZ" --data-root "$H1" list -a

step "host1 -> host2: vzsdk migrate (live)"
"$VZ" --data-root "$H1" migrate demo-ct "ssh://root@$IP2" --remote-data-root "$H2" "${MIG[@]}"
"$VZ" --data-root "$H1" migrate demo-vm "ssh://root@$IP2" --remote-data-root "$H2" "${MIG[@]}"
echo "host1 now:"; "$VZ" --data-root "$H1" list -a
echo "host2 now:"; ssh_h2 "$VZ" list -a
echo "the container's counter on host2: $(ssh_h2 "$VZ" ct exec demo-ct -- cat /tmp/counter); it answers ping there:"
ip netns exec "$NS" ping -c 1 -W 2 10.209.0.250 | tail -n2

step "host2 -> host1: vzsdk migrate run on host2"
ssh_h2 "$VZ" migrate demo-ct "ssh://root@$IP1" --remote-data-root "$H1" "${MIG[@]}"
ssh_h2 "$VZ" migrate demo-vm "ssh://root@$IP1" --remote-data-root "$H1" "${MIG[@]}"
echo "host1 again:"; "$VZ" --data-root "$H1" list -a
echo "the container's counter, still the same process: $("$VZ" --data-root "$H1" ct exec demo-ct -- cat /tmp/counter)"
echo "the VM's counter: $("$VZ" --data-root "$H1" vm exec demo-vm -- cat /run/counter)"
step "done: both came back live"
