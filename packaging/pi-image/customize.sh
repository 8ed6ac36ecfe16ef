#!/bin/sh
# mmdebstrap customize hook for build.sh: runs with the finished root filesystem in $1 (arm64, through binfmt).
set -eu
r=$1

# build.sh diverted update-initramfs while packages were installed (under emulation every run takes many minutes,
# and the kernel and several triggers would each start one); put it back and build the initramfs once, below
rm -f "$r/usr/sbin/update-initramfs"
chroot "$r" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs

# host name and mDNS: avahi announces <hostname>.local, so the admin UI is http://hearth.local/
echo hearth > "$r/etc/hostname"
cat > "$r/etc/hosts" <<HOSTS
127.0.0.1	localhost
127.0.1.1	hearth
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
HOSTS

# filesystems by label; noatime and a long commit interval spare the SD card
cat > "$r/etc/fstab" <<FSTAB
LABEL=RASPIROOT	/		ext4	rw,noatime,commit=60,errors=remount-ro	0 1
LABEL=RASPIFIRM	/boot/firmware	vfat	rw,noatime,umask=0077	0 2
FSTAB

# the Pi itself resolves through hearth
rm -f "$r/etc/resolv.conf"
printf 'nameserver 127.0.0.1\noptions edns0 trust-ad\n' > "$r/etc/resolv.conf"

# the firmware's kernel command line: root by label, consoles on the UART and HDMI
cat >> "$r/etc/default/raspi-firmware" <<DEFAULTS

# hearth image
ROOTPART=LABEL=RASPIROOT
CONSOLES="ttyS1,115200 tty0"
DEFAULTS
chroot "$r" update-initramfs -c -k all
chroot "$r" env DEB_MAINT_PARAMS=configure /etc/kernel/postinst.d/z50-raspi-firmware

# services: networking, first boot, hearth (enabled by its package), mDNS, SSH, time, and the copy of hearth's
# one-time setup code to the boot partition (hearth-setup-code.txt, removed once the admin account exists)
chroot "$r" systemctl enable systemd-networkd.service systemd-timesyncd.service hearth-firstboot.service \
	avahi-daemon.service ssh.service hearth.service hearth-setup-code.service hearth-setup-code.path

# first boot must not stop at a console prompt (locale, time zone, root password): there is no one at the console
chroot "$r" systemctl mask systemd-firstboot.service >/dev/null 2>&1 || true

# no secrets or identity in the image: every card makes its own on first boot
rm -f "$r"/etc/ssh/ssh_host_*
echo uninitialized > "$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
rm -f "$r/var/lib/systemd/random-seed"
rm -rf "$r/var/lib/hearth" "$r/var/lib/hearth-firstboot"
# no passwords anywhere: root is locked (console and SSH); access is hearth's web UI, or SSH with a key
chroot "$r" passwd --lock root >/dev/null
# leftovers of the build
rm -rf "$r"/var/cache/apt/*.bin "$r"/var/log/*.log "$r"/var/log/apt/* "$r"/tmp/*
