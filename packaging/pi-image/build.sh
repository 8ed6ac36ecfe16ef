#!/usr/bin/env bash
# Build the flash-and-run Raspberry Pi image (Pi 3, 4 and 400; arm64) from Debian packages:
#   packaging/pi-image/build.sh [--deb dist/hearth_<version>_arm64.deb] [--suite bookworm] [--mirror URL]
# → dist/hearth-<version>-rpi-arm64.img.xz   (flash with: xzcat … | sudo dd of=/dev/sdX bs=4M conv=fsync)
#
# Debian bookworm arm64 with linux-image-arm64 and raspi-firmware (mmdebstrap; on x86_64 through
# qemu-user-static's binfmt handler), hearth's .deb installed and enabled, systemd-networkd (DHCP), avahi
# (hearth.local), OpenSSH with keys only. The image holds no secrets and no passwords: root is locked, the SSH host
# keys and /etc/machine-id are made on first boot (hearth-firstboot.service, which also grows the root filesystem
# to the card), and hearth's admin account is created in the browser wizard. Two partitions, found by label:
# RASPIFIRM (FAT, the Pi firmware, kernel and initramfs) and RASPIROOT (ext4). No loop devices or mounts are used:
# the filesystems are made from directories (mkfs.ext4 -d, mtools), so it also runs in a container.
#
# Needs (Debian): mmdebstrap qemu-user-static binfmt-support dosfstools mtools e2fsprogs fdisk xz-utils
# Boot test under emulation: packaging/pi-image/boot-qemu.sh dist/hearth-<version>-rpi-arm64.img.xz
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
deb="$root/dist/hearth_${version}_arm64.deb"
suite=bookworm
mirror=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb=$(realpath "$2"); shift 2 ;;
    --suite) suite=$2; shift 2 ;;
    --mirror) mirror=$2; shift 2 ;;
    *) echo "usage: $0 [--deb FILE] [--suite bookworm] [--mirror URL]" >&2; exit 2 ;;
  esac
done
[ -f "$deb" ] || { echo "$deb is missing: run packaging/build.sh --target aarch64 first" >&2; exit 1; }
for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy sfdisk xz; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install mmdebstrap dosfstools mtools e2fsprogs fdisk xz-utils)" >&2; exit 1; }
done
if [ "$(uname -m)" != aarch64 ] && ! grep -qs enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  echo "no binfmt handler for arm64: apt-get install qemu-user-static binfmt-support" >&2
  exit 1
fi
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
cp "$deb" "$work/hearth.deb"

packages=(
  systemd-sysv udev kmod dbus systemd-timesyncd initramfs-tools
  linux-image-arm64 raspi-firmware
  avahi-daemon openssh-server
  cloud-guest-utils fdisk e2fsprogs util-linux dosfstools
  iproute2 ca-certificates adduser less procps
)
mmdebstrap --architectures=arm64 --variant=minbase --components=main,non-free-firmware \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --setup-hook='mkdir -p "$1/boot/firmware"' \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/sbin/update-initramfs.hearth --add /usr/sbin/update-initramfs && printf "#!/bin/sh\nexit 0\n" > "$1/usr/sbin/update-initramfs" && chmod 0755 "$1/usr/sbin/update-initramfs"' \
  --customize-hook="cp '$work/hearth.deb' \"\$1/tmp/hearth.deb\"" \
  --customize-hook='chroot "$1" dpkg -i /tmp/hearth.deb && rm "$1/tmp/hearth.deb"' \
  --customize-hook="cp '$here/files/hearth-firstboot' \"\$1/usr/local/sbin/\" && chmod 0755 \"\$1/usr/local/sbin/hearth-firstboot\"" \
  --customize-hook="cp '$here/files/hearth-firstboot.service' \"\$1/etc/systemd/system/\"" \
  --customize-hook="cp '$here/files/hearth-setup-code' \"\$1/usr/local/sbin/\" && chmod 0755 \"\$1/usr/local/sbin/hearth-setup-code\" && cp '$here/files/hearth-setup-code.service' '$here/files/hearth-setup-code.path' \"\$1/etc/systemd/system/\"" \
  --customize-hook="cp '$here/files/50-wired.network' \"\$1/etc/systemd/network/\"" \
  --customize-hook="mkdir -p \"\$1/etc/ssh/sshd_config.d\" \"\$1/etc/systemd/journald.conf.d\" && cp '$here/files/sshd-hearth.conf' \"\$1/etc/ssh/sshd_config.d/hearth.conf\" && cp '$here/files/journald-hearth.conf' \"\$1/etc/systemd/journald.conf.d/hearth.conf\"" \
  --customize-hook="$here/customize.sh \"\$1\"" \
  "$suite" "$rootfs" \
  "deb $mirror $suite main non-free-firmware" \
  "deb $mirror $suite-updates main non-free-firmware" \
  "deb ${mirror%/debian}/debian-security $suite-security main non-free-firmware"

# The firmware partition: what raspi-firmware put in /boot/firmware. The root filesystem keeps an empty mount point.
fw_mb=256
mkfs.vfat -n RASPIFIRM -F 32 -S 512 -C "$work/fw.img" $((fw_mb * 1024)) >/dev/null
mcopy -s -p -m -i "$work/fw.img" "$rootfs/boot/firmware/"* ::/
find "$rootfs/boot/firmware" -mindepth 1 -delete

# The root filesystem from the directory: its size plus 25% and 200 MiB of room (first boot grows it to the card).
used_mb=$(du -sm --apparent-size "$rootfs" | cut -f1)
root_mb=$((used_mb * 5 / 4 + 200))
mkfs.ext4 -q -L RASPIROOT -d "$rootfs" -E root_owner=0:0 -U random "$work/root.img" "${root_mb}M"

# The disk: an MBR table (what every Pi's boot ROM reads), 4 MiB of alignment, firmware, root.
img="$work/disk.img"
total_mb=$((4 + fw_mb + root_mb))
truncate -s "${total_mb}M" "$img"
sfdisk --quiet "$img" <<TABLE
label: dos
start=4MiB, size=${fw_mb}MiB, type=c, bootable
start=$((4 + fw_mb))MiB, type=83
TABLE
dd if="$work/fw.img" of="$img" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$img" bs=1M seek=$((4 + fw_mb)) conv=notrunc,sparse status=none

mkdir -p "$root/dist"
out="$root/dist/hearth-$version-rpi-arm64.img.xz"
xz -T0 -6 -c "$img" > "$out.tmp"
mv "$out.tmp" "$out"
ls -l "$out"
echo "image: $out (${total_mb} MiB raw); flash it, boot, open http://hearth.local/"
