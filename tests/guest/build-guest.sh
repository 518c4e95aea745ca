#!/bin/sh
# Builds the small Linux guest that the VM tests, samples and `./build.sh demo` boot:
#   - the kernel of Debian's linux-image-cloud-amd64 (the real package its metapackage depends on),
#   - a busybox initramfs (the host's busybox-static) that loads the virtio modules in dependency order,
#     starts qemu-guest-agent on the virtio-serial port named org.qemu.guest_agent.0, answers ACPI power
#     button presses, takes an address by DHCP when it has a NIC, and mounts /dev/vda on /mnt/data when it
#     holds an ext4 (or ext2) file system.
# Packages come from `apt-get download` + `dpkg -x`; nothing is installed on the host.
# Output: VMLINUZ and INITRD in a cache directory keyed by the package versions and this script's hash;
# the directory's path is printed as the last line. Later runs reuse it.
#
# Kernel command line switches the guest understands:
#   vzsdk.deaf=1   the guest ignores agent shutdown requests and ACPI power-down (tests of the kill fallback)
#
# Usage: build-guest.sh [CACHE_ROOT]   (default $VZSDK_TEST_GUEST_CACHE or /var/cache/vzsdk-test-guest)
set -eu

CACHE_ROOT=${1:-${VZSDK_TEST_GUEST_CACHE:-/var/cache/vzsdk-test-guest}}
SCRIPT_HASH=$(sha256sum "$0" | cut -c1-12)

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-guest: '$1' is required ($2)" >&2; exit 1; }; }
need apt-get "apt"
need apt-cache "apt"
need dpkg "dpkg"
need cpio "cpio"
need gzip "gzip"
need ldd "libc-bin"
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "build-guest: busybox is required (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "build-guest: $BUSYBOX is dynamically linked; install busybox-static" >&2; exit 1
fi

KPKG=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n1)
[ -n "$KPKG" ] || { echo "build-guest: cannot resolve the kernel package of linux-image-cloud-amd64 (run apt-get update)" >&2; exit 1; }
KVER_PKG=$(apt-cache policy "$KPKG" | sed -n 's/^ *Candidate: //p')
QGA_VER=$(apt-cache policy qemu-guest-agent | sed -n 's/^ *Candidate: //p')
BB_VER=$("$BUSYBOX" 2>&1 | head -n1 | awk '{print $2}')
KEY=$(printf '%s\n' "$KPKG" "$KVER_PKG" "$QGA_VER" "$BB_VER" "$SCRIPT_HASH" | sha256sum | cut -c1-16)
OUT="$CACHE_ROOT/$KEY"

if [ -f "$OUT/VMLINUZ" ] && [ -f "$OUT/INITRD" ] && [ -f "$OUT/MANIFEST" ]; then
  echo "$OUT"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
WORK=$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
cd "$WORK"

echo "build-guest: downloading $KPKG ($KVER_PKG) and qemu-guest-agent ($QGA_VER)" >&2
mkdir deb && (cd deb && apt-get download -q "$KPKG" qemu-guest-agent >/dev/null 2>"$WORK/apt.log") \
  || { cat "$WORK/apt.log" >&2; exit 1; }
for d in deb/*.deb; do dpkg -x "$d" x; done

KVER=$(ls x/lib/modules | head -n1)
cp "x/boot/vmlinuz-$KVER" VMLINUZ

R=root
mkdir -p $R/bin $R/sbin $R/usr/bin $R/usr/sbin $R/etc/acpi/PWRF $R/etc/acpi/PWRB $R/proc $R/sys $R/dev $R/tmp \
         $R/run $R/var $R/mnt/data $R/root $R/lib/modules $R/usr/share/udhcpc
ln -s ../run $R/var/run
cp "$BUSYBOX" $R/bin/busybox
for a in $("$BUSYBOX" --list); do
  [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
ln -sf ../bin/busybox $R/sbin/init
ln -sf bin/busybox $R/init

# Modules, in dependency order (the package ships no modules.dep).
MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/char/virtio_console
drivers/virtio/virtio_balloon drivers/virtio/virtio_mem drivers/block/virtio_blk net/core/failover
drivers/net/net_failover drivers/net/virtio_net drivers/input/evdev drivers/acpi/button"
: > $R/etc/modules
for m in $MODS; do
  cp "x/lib/modules/$KVER/kernel/$m.ko" $R/lib/modules/
  echo "$(basename "$m")" >> $R/etc/modules
done

# qemu-guest-agent and the shared libraries it links against.
cp x/usr/sbin/qemu-ga $R/usr/sbin/qemu-ga
for lib in $(ldd x/usr/sbin/qemu-ga | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
mkdir -p $R/lib64
[ -e $R/lib64/ld-linux-x86-64.so.2 ] || cp -L /lib64/ld-linux-x86-64.so.2 $R/lib64/

cat > $R/etc/inittab <<'INITTAB'
::sysinit:/etc/rc
::respawn:/sbin/qga-run
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
INITTAB

cat > $R/etc/rc <<'RC'
#!/bin/sh
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname vzsdk-guest
for m in $(cat /etc/modules); do insmod /lib/modules/$m.ko 2>/dev/null; done
ip link set lo up
if grep -q 'vzsdk.deaf=1' /proc/cmdline; then
  echo "vzsdk-guest: deaf mode: ignoring agent shutdown and ACPI power-down"
  printf '#!/bin/sh\necho "shutdown ignored (deaf guest)"\nexit 0\n' > /run/shutdown
else
  printf '#!/bin/sh\nsync\npoweroff\n' > /run/shutdown
  acpid -c /etc/acpi -l /run/acpid.log
fi
chmod +x /run/shutdown
for i in $(ls /sys/class/net); do
  [ "$i" = lo ] && continue
  ip link set "$i" up
  udhcpc -i "$i" -s /usr/share/udhcpc/default.script -b -q -t 5 -T 1 >/dev/null 2>&1 &
done
for d in /dev/vda; do
  [ -b "$d" ] && mount -t ext4 "$d" /mnt/data 2>/dev/null || mount -t ext2 "$d" /mnt/data 2>/dev/null || true
done
echo "vzsdk-guest: up $(cat /proc/uptime)"
RC
chmod +x $R/etc/rc

cat > $R/sbin/qga-run <<'QGA'
#!/bin/sh
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
port=
for p in /sys/class/virtio-ports/*; do
  [ -e "$p/name" ] && [ "$(cat "$p/name")" = org.qemu.guest_agent.0 ] && port=/dev/$(basename "$p")
done
if [ -z "$port" ]; then sleep 1; exit 0; fi
exec /usr/sbin/qemu-ga -m virtio-serial -p "$port" -t /run -f /run/qemu-ga.pid
QGA
chmod +x $R/sbin/qga-run

# qemu-ga's guest-shutdown runs /sbin/shutdown; busybox has none.
printf '#!/bin/sh\nexec /run/shutdown "$@"\n' > $R/sbin/shutdown
chmod +x $R/sbin/shutdown
printf '#!/bin/sh\nsync\npoweroff\n' > $R/etc/acpi/PWRF/00000080
cp $R/etc/acpi/PWRF/00000080 $R/etc/acpi/PWRB/00000080
chmod +x $R/etc/acpi/PWRF/00000080 $R/etc/acpi/PWRB/00000080

# guest-set-user-password runs chpasswd (reads user:password, -e when already hashed); busybox-static has none.
cat > $R/usr/sbin/chpasswd <<'CHPASSWD'
#!/bin/sh
enc=0
[ "${1:-}" = "-e" ] && enc=1
while IFS= read -r line; do
  user=${line%%:*}; pass=${line#*:}
  grep -q "^$user:" /etc/shadow || { echo "chpasswd: unknown user $user" >&2; exit 1; }
  if [ $enc = 1 ]; then hash=$pass; else hash=$(mkpasswd -m sha512 "$pass"); fi
  awk -F: -v OFS=: -v u="$user" -v h="$hash" '$1==u{$2=h} {print}' /etc/shadow > /etc/shadow.new && mv /etc/shadow.new /etc/shadow
done
CHPASSWD
chmod +x $R/usr/sbin/chpasswd

cat > $R/usr/share/udhcpc/default.script <<'DHCP'
#!/bin/sh
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "${router:-}" ] && ip route replace default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in ${dns:-}; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
exit 0
DHCP
chmod +x $R/usr/share/udhcpc/default.script

printf 'root:x:0:0:root:/root:/bin/sh\nguest:x:1000:1000:guest:/tmp:/bin/sh\n' > $R/etc/passwd
printf 'root:*:19000:0:99999:7:::\nguest:*:19000:0:99999:7:::\n' > $R/etc/shadow
chmod 600 $R/etc/shadow
printf 'root:x:0:\nguest:x:1000:\n' > $R/etc/group
printf 'PRETTY_NAME="vzsdk test guest (busybox %s, Debian kernel %s)"\nNAME="vzsdk-guest"\nID=vzsdk-guest\nVERSION_ID="1"\n' "$BB_VER" "$KVER" > $R/etc/os-release
echo vzsdk-guest > $R/etc/hostname

(cd $R && find . | cpio -o -H newc --quiet | gzip -6) > INITRD

cat > MANIFEST <<MAN
kernel_package=$KPKG
kernel_package_version=$KVER_PKG
kernel_release=$KVER
qemu_guest_agent=$QGA_VER
busybox=$BB_VER
script=$SCRIPT_HASH
append=console=ttyS0 memhp_default_state=online panic=-1 quiet
MAN

mkdir -p "$OUT.tmp.$$"
mv VMLINUZ INITRD MANIFEST "$OUT.tmp.$$/"
rm -rf "$OUT"
mv "$OUT.tmp.$$" "$OUT"
echo "build-guest: built $OUT" >&2
echo "$OUT"
