#!/bin/bash
# A throwaway copy of this machine in which the install script can run as root.
#
# Run as root inside `unshare --mount --pid --net --uts --ipc --fork --kill-child` (sandbox.py):
# a private mount namespace, so nothing mounted here is seen outside; no network; its own host
# name; every process it starts dies with it. The root is an overlay whose lower layer is this
# machine's / (read only) and whose upper layer is a tmpfs: every write lands in memory and is
# gone when the namespace ends. Devices, /boot and /etc are arranged like a Hetzner server of
# the layout under test (STUB_FIRMWARE bios|efi, STUB_ARCH x86_64|aarch64), the stubs in
# CASE/sandbox/stubs come first on PATH, and each CASE/sandbox/run-N.sh runs in turn, as
# pulumi-command runs a `create`: `bash -c "<the script>"`. Results go to CASE/out.
set -euo pipefail
case_dir=$1
# shellcheck source=/dev/null
. "$case_dir/env"

t=$case_dir/tmpfs
out=$case_dir/out
mkdir -p "$t" "$out"
mount -t tmpfs -o size=1g,mode=0755 sandbox "$t"
mkdir "$t/upper" "$t/work" "$t/root"
mount -t overlay sandbox -o "lowerdir=/,upperdir=$t/upper,workdir=$t/work" "$t/root"
root=$t/root

mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755 run "$root/run"
mount -t tmpfs -o mode=0755 nix "$root/nix"
mount -t tmpfs -o mode=1777 tmp "$root/tmp"
mount -t tmpfs -o mode=0755 dev "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

# The disk (sda: root on sda1, ESP on sda15 when EFI) and the data volume (sdb), with the udev
# links Hetzner's Debian has. Plain files stand in for the block devices.
for device in sda sda1 sda14 sda15 sdb; do : >"$root/dev/$device"; done
mkdir -p "$root/dev/disk/by-id" "$root/dev/disk/by-uuid"
ln -s ../../sda "$root/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-0-0"
ln -s ../../sda1 "$root/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-0-0-part1"
ln -s ../../sdb "$root/dev/disk/by-id/scsi-0HC_Volume_100000001"
ln -s ../../sda1 "$root/dev/disk/by-uuid/$ROOT_UUID"
ln -s ../../sdb "$root/dev/disk/by-uuid/$VOLUME_UUID"

rm -rf "${root:?}/boot" "$root/etc/nixos" "$root/root/nixos-install" "$root/root/.nix-profile" \
  "$root/root/.nix-defexpr" "$root/etc/NIXOS" "$root/etc/NIXOS_LUSTRATE" \
  "$root/var/log/nixos-infect.log"
mkdir -p "$root/boot/grub"
: >"$root/boot/vmlinuz-6.1.0-28-cloud-amd64"
if [ "$STUB_FIRMWARE" = efi ]; then
  mkdir -p "$root/sys/firmware/efi" "$root/boot/efi/EFI/debian"
  : >"$root/boot/efi/EFI/debian/grubx64.efi"
  ln -s ../../sda15 "$root/dev/disk/by-uuid/$ESP_UUID"
fi

# What cloud-init and Hetzner's image leave: the stack's host key, the deploy key for root, a
# plain resolv.conf, Debian 12.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/ssh" "$root/root/.ssh"
printf 'fake private key\n' >"$root/etc/ssh/ssh_host_ed25519_key"
printf '%s\n' "$HOST_PUBLIC_KEY" >"$root/etc/ssh/ssh_host_ed25519_key.pub"
printf '%s\n' "$DEPLOY_PUBLIC_KEY" >"$root/root/.ssh/authorized_keys"
rm -f "$root/etc/resolv.conf"
printf 'nameserver 185.12.64.1\nnameserver 185.12.64.2\n' >"$root/etc/resolv.conf"
rm -f "$root/etc/os-release"
cp "$case_dir/os-release" "$root/etc/os-release"

cp -a "$case_dir/sandbox" "$root/sandbox"
: >"$root/sandbox/calls.log"
if [ "${REMOVE_PATCH:-}" = 1 ]; then
  cp "$root/usr/bin/patch" "$root/sandbox/saved-patch"
  rm -f "$root/usr/bin/patch"
fi

run=1
while [ -f "$case_dir/sandbox/run-$run.sh" ]; do
  code=0
  timeout "${RUN_TIMEOUT:-120}" env -i \
    PATH=/sandbox/stubs:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root USER=root LANG=C.UTF-8 \
    STUB_LOG=/sandbox/calls.log STUB_DIR=/sandbox/stubs STUB_SERVED=/sandbox/served \
    STUB_ARCH="$STUB_ARCH" STUB_FIRMWARE="$STUB_FIRMWARE" STUB_SAVED_PATCH=/sandbox/saved-patch \
    chroot "$root" /bin/bash -c "$(cat "$case_dir/sandbox/run-$run.sh")" \
    >"$out/stdout-$run" 2>"$out/stderr-$run" || code=$?
  echo "$code" >"$out/rc-$run"
  echo "=== end of run $run" >>"$root/sandbox/calls.log"
  run=$((run + 1))
done

cp "$root/sandbox/calls.log" "$out/calls.log"
[ ! -d "$root/etc/nixos" ] || cp -r "$root/etc/nixos" "$out/etc-nixos"
for file in var/log/nixos-infect.log etc/NIXOS_LUSTRATE; do
  [ ! -f "$root/$file" ] || cp "$root/$file" "$out/$(basename "$file")"
done
cd "$root"
find boot boot.bak boot/efi.bak -maxdepth 0 2>/dev/null >"$out/boot-dirs" || true
