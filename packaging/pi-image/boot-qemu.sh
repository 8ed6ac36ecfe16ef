#!/usr/bin/env bash
# Boot the Raspberry Pi image under emulation and check that it comes up as a working hearth:
#   packaging/pi-image/boot-qemu.sh dist/hearth-<version>-rpi-arm64.img.xz
# qemu-system-aarch64 -M virt (no Pi board model runs Debian's kernel well) boots the kernel and initramfs that the
# image's firmware partition names in config.txt, with the kernel command line from its cmdline.txt, on a copy of
# the image grown by 1 GiB, and forwards loopback ports to the guest's DNS, HTTP and SSH. Passes when: first boot
# grew the root filesystem and made SSH host keys, hearth answers DNS over UDP and TCP, /healthz is 200, the admin
# UI is served and the setup wizard is waiting (no admin account exists) with its setup code copied to the boot
# partition, and SSH refuses passwords.
# Takes 3–10 minutes under software emulation. Needs: qemu-system-arm, mtools, dig, curl, ssh-keyscan.
set -euo pipefail
img_xz=${1:?usage: $0 dist/hearth-<version>-rpi-arm64.img.xz}
timeout_s=${BOOT_TIMEOUT:-1200}
work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-boot.XXXXXX")
qemu_pid=
cleanup() {
  [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  echo "--- last lines of the guest console ---" >&2
  tail -40 "$work/console.log" >&2 || true
  if [ -n "${ssh:-}" ]; then
    echo "--- hearth in the guest (over SSH with the test key) ---" >&2
    guest 'systemctl status hearth.service --no-pager; journalctl -b -u hearth.service --no-pager | tail -40' >&2 || true
  fi
  exit 1
}
guest() {
  ssh -p "$ssh" -i "$work/key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o ConnectTimeout=20 root@127.0.0.1 "$@"
}

echo "unpacking $img_xz"
xz -dc "$img_xz" > "$work/disk.img"
truncate -s +1G "$work/disk.img" # first boot must grow the root filesystem into this

# the firmware partition (the first one): config.txt names the kernel and initramfs, cmdline.txt the arguments
start=$(sfdisk -J "$work/disk.img" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])')
fat="$work/disk.img@@$((start * 512))"
mtype -i "$fat" ::config.txt > "$work/config.txt"
kernel=$(sed -n 's/^kernel=//p' "$work/config.txt")
initrd=$(sed -n 's/^initramfs //p' "$work/config.txt")
[ -n "$kernel" ] && [ -n "$initrd" ] || fail "config.txt names no kernel or initramfs"
mcopy -i "$fat" "::$kernel" "$work/vmlinuz"
mcopy -i "$fat" "::$initrd" "$work/initrd"
cmdline=$(mtype -i "$fat" ::cmdline.txt | tr -d '\r\n')
# a test key on the boot partition, as a user would drop one: first boot installs it for root
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
mcopy -i "$fat" "$work/key.pub" ::authorized_keys
echo "$cmdline" | grep -q 'root=LABEL=RASPIROOT' || fail "cmdline.txt does not boot the RASPIROOT partition: $cmdline"
# the Pi's consoles (ttyS1, tty0) become the virt board's PL011 UART
cmdline="$(echo "$cmdline" | sed 's/console=[^ ]*//g') console=ttyAMA0,115200"
echo "kernel $kernel, initramfs $initrd, cmdline: $cmdline"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port) dns=$(port) ssh=$(port)
qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 -nographic -no-reboot \
  -kernel "$work/vmlinuz" -initrd "$work/initrd" -append "$cmdline" \
  -drive file="$work/disk.img",format=raw,if=none,id=disk -device virtio-blk-pci,drive=disk \
  -netdev "user,id=net,hostfwd=tcp:127.0.0.1:$http-:80,hostfwd=tcp:127.0.0.1:$dns-:53,hostfwd=udp:127.0.0.1:$dns-:53,hostfwd=tcp:127.0.0.1:$ssh-:22" \
  -device virtio-net-pci,netdev=net \
  -serial "file:$work/console.log" -monitor none > "$work/qemu.log" 2>&1 &
qemu_pid=$!
echo "booting (console: $work/console.log; HTTP on 127.0.0.1:$http, DNS on :$dns, SSH on :$ssh)"

started=$(date +%s)
until curl -sf -m 5 "http://127.0.0.1:$http/healthz" >/dev/null; do
  kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited: $(cat "$work/qemu.log")"
  [ $(( $(date +%s) - started )) -lt "$timeout_s" ] || fail "hearth did not answer /healthz within ${timeout_s}s"
  sleep 5
done
echo "hearth answered /healthz after $(( $(date +%s) - started ))s"

# first boot may still be making SSH keys (slow under emulation) when hearth already answers
for _ in $(seq 1 60); do grep -q 'hearth-firstboot: done' "$work/console.log" && break; sleep 5; done
grep -q 'hearth-firstboot: done' "$work/console.log" || fail "first boot did not finish"
grep 'hearth-firstboot: root filesystem' "$work/console.log" | tail -1
grep -q 'hearth-firstboot: CHANGED' "$work/console.log" || fail "first boot did not grow the root partition"

# DNS over UDP and TCP: home.arpa is answered by hearth itself (NXDOMAIN for a name it has no record for)
for transport in +notcp +tcp; do
  out=$(dig @127.0.0.1 -p "$dns" "$transport" +tries=3 +time=5 nothing.home.arpa A) || fail "no DNS answer ($transport)"
  echo "$out" | grep -q 'status: NXDOMAIN' || fail "unexpected DNS answer ($transport): $out"
done
echo "DNS answers over UDP and TCP"

# the admin UI and the waiting setup wizard
curl -sf "http://127.0.0.1:$http/" | grep -qi '<html' || fail "the admin UI is not served"
setup=$(curl -sf "http://127.0.0.1:$http/api/v1/setup") || fail "GET /api/v1/setup"
echo "$setup" | python3 -c "import json,sys; sys.exit(0 if json.load(sys.stdin)[\"needs_setup\"] is True else 1)" || fail "the setup wizard is not waiting: $setup"
echo "the admin UI is served and the setup wizard waits"
# the one-time setup code the wizard asks for is copied to the boot partition (hearth-setup-code.txt)
for _ in $(seq 1 24); do grep -q 'hearth-setup-code: setup code copied' "$work/console.log" && break; sleep 5; done
grep -q 'hearth-setup-code: setup code copied' "$work/console.log" || fail "the setup code was not copied to the boot partition"
echo "the setup code is on the boot partition"

# SSH: host keys exist (made on first boot), passwords are refused
keys=
for _ in $(seq 1 12); do
  keys=$(ssh-keyscan -t ed25519 -p "$ssh" -T 20 127.0.0.1 2>/dev/null) || true
  echo "$keys" | grep -q ssh-ed25519 && break
  sleep 5
done
echo "$keys" | grep -q ssh-ed25519 || fail "sshd has no host keys"
methods=$(ssh -v -p "$ssh" -o BatchMode=yes -o PubkeyAuthentication=no -o StrictHostKeyChecking=no \
  -o UserKnownHostsFile=/dev/null -o ConnectTimeout=20 root@127.0.0.1 true 2>&1 |
  sed -n 's/.*Authentications that can continue: //p' | tr -d '\r' | head -1) || true # ssh itself fails: no key offered
[ "$methods" = publickey ] || fail "SSH offers more than public keys: '$methods'"
[ "$(guest 'cat /etc/machine-id')" != uninitialized ] || fail "no machine id was made"
guest 'test ! -e /boot/firmware/authorized_keys' || fail "the key file stayed on the boot partition"
echo "SSH has this machine's own host keys, accepts keys only, and took the key from the boot partition"
echo "ok: the image boots to a working hearth in $(( $(date +%s) - started ))s"
