#!/bin/bash
# SPDX-License-Identifier: ISC
# Build the tiny test guest for the VM tests: tools/vm/build-guest.sh OUTDIR
#
# Writes OUTDIR/vmlinuz (the kernel of Debian's linux-image-amd64) and
# OUTDIR/initrd.gz (a gzip'd newc cpio holding a static busybox, the virtio
# modules the guest needs and tools/vm/guest-init as /init). Needs only
# Debian's package mirror: the kernel and busybox .debs are fetched with
# "apt-get download" into OUTDIR/debs and unpacked in a temporary directory,
# so neither is installed on the host (its /boot is not touched). Host tools
# that are missing (cpio, and xz-utils/zstd for compressed modules) are
# installed with apt-get.
#
# Cached: does nothing when both outputs exist and are newer than this script
# and guest-init. Set GUEST_KERNEL_PKG to use another kernel package than the
# one linux-image-amd64 depends on.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self=$here/$(basename "$0")
init=$here/guest-init

if (($# != 1)) || [[ $1 == -* ]]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
out=$1
mkdir -p "$out"
out=$(cd "$out" && pwd)

say() { echo "build-guest: $*" >&2; }
die() {
	say "error: $*"
	exit 1
}

[[ -f $init ]] || die "missing $init"

up_to_date() {
	local o i
	for o in "$out/vmlinuz" "$out/initrd.gz"; do
		[[ -s $o ]] || return 1
		for i in "$self" "$init"; do
			[[ $o -nt $i ]] || return 1
		done
	done
}
if up_to_date; then
	say "up to date: $out/vmlinuz $out/initrd.gz"
	exit 0
fi

[[ $(dpkg --print-architecture 2>/dev/null) == amd64 ]] || die "only amd64 hosts are supported"

as_root() {
	if ((EUID == 0)); then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "not root and no sudo: cannot run $*"
	fi
}

apt_updated=
apt_update() {
	[[ -n $apt_updated ]] && return 0
	say "apt-get update"
	as_root apt-get update -q >&2 || die "apt-get update failed"
	apt_updated=1
}

# need_cmd CMD PACKAGE: install PACKAGE unless CMD exists.
need_cmd() {
	command -v "$1" >/dev/null && return 0
	say "installing $2 (for $1)"
	apt_update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >&2 ||
		die "apt-get install $2 failed"
	command -v "$1" >/dev/null || die "$2 installed but $1 still missing"
}

need_cmd cpio cpio
need_cmd gzip gzip
need_cmd dpkg-deb dpkg

tmp=$(mktemp -d "${TMPDIR:-/tmp}/p2pvbd-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The concrete kernel package (linux-image-amd64 is a metapackage).
kpkg=${GUEST_KERNEL_PKG:-}
if [[ -z $kpkg ]]; then
	find_kpkg() {
		apt-cache depends linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
	}
	kpkg=$(find_kpkg)
	if [[ -z $kpkg ]]; then
		apt_update
		kpkg=$(find_kpkg)
	fi
	[[ -n $kpkg ]] || die "cannot tell which kernel package linux-image-amd64 depends on"
fi

# fetch PKG: print the path of PKG's .deb in OUTDIR/debs, downloading it if needed.
mkdir -p "$out/debs"
fetch() {
	local pkg=$1 ver deb
	ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
	if [[ -z $ver || $ver == "(none)" ]]; then
		apt_update
		ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
	fi
	[[ -n $ver && $ver != "(none)" ]] || die "no candidate version of $pkg in apt's lists"
	# .deb names encode ':' as %3a.
	deb=$out/debs/${pkg}_${ver//:/%3a}_amd64.deb
	if [[ ! -s $deb ]]; then
		say "downloading $pkg $ver"
		# Fetch into the temp dir first: a partial download must not look cached.
		(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2) ||
			{
				apt_update
				(cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2)
			} || die "apt-get download $pkg=$ver failed"
		mv "$tmp/$(basename "$deb")" "$deb" || die "apt-get download did not produce $(basename "$deb")"
		# Drop older versions of the same package.
		find "$out/debs" -maxdepth 1 -name "${pkg}_*.deb" ! -name "$(basename "$deb")" -delete
	fi
	echo "$deb"
}

kdeb=$(fetch "$kpkg")
bdeb=$(fetch busybox-static)

say "unpacking $(basename "$kdeb")"
dpkg-deb -x "$kdeb" "$tmp/k"
say "unpacking $(basename "$bdeb")"
dpkg-deb -x "$bdeb" "$tmp/bb"

vmlinuz=$(find "$tmp/k/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
[[ -n $vmlinuz ]] || die "no boot/vmlinuz-* in $kdeb"
kver=${vmlinuz##*/vmlinuz-}
mdir=$tmp/k/lib/modules/$kver
[[ -d $mdir ]] || mdir=$tmp/k/usr/lib/modules/$kver
[[ -d $mdir ]] || die "no lib/modules/$kver in $kdeb"
busybox=$tmp/bb/bin/busybox
[[ -x $busybox ]] || die "no bin/busybox in $bdeb"

# Index the modules: name (dashes as underscores) -> file.
declare -A modfile=()
while IFS= read -r -d '' f; do
	name=${f##*/}
	name=${name%%.ko*}
	modfile[${name//-/_}]=$f
done < <(find "$mdir/kernel" -name '*.ko*' -print0)
((${#modfile[@]} > 0)) || die "no modules under $mdir/kernel"

# The guest's drivers: virtio PCI transport, disk, console (hvc0; the tests use ttyS0).
# Built-in ones (modules.builtin) need nothing.
wanted=(virtio_pci virtio_blk virtio_console)

# module_plain NAME DEST: the module's uncompressed .ko at DEST (busybox
# insmod does not reliably read compressed modules, so decompress here).
module_plain() {
	local f=${modfile[$1]}
	case $f in
	*.ko) cp "$f" "$2" ;;
	*.ko.xz)
		need_cmd xz xz-utils
		xz -dc "$f" >"$2"
		;;
	*.ko.zst)
		need_cmd zstd zstd
		zstd -qdc "$f" >"$2"
		;;
	*.ko.gz) gzip -dc "$f" >"$2" ;;
	*) die "unknown module format: $f" ;;
	esac
}

builtin_list=$mdir/modules.builtin
is_builtin() {
	[[ -f $builtin_list ]] && grep -Eq "/${1//_/[-_]}\\.ko\$" "$builtin_list"
}

root=$tmp/root
mkdir -p "$root/bin" "$root/lib/modules" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
: >"$root/etc/modules"
declare -A state=()
# add_module NAME: add NAME after its dependencies (depth first).
add_module() {
	local name=$1 deps d
	[[ ${state[$name]:-} == 'done' ]] && return 0
	[[ ${state[$name]:-} == busy ]] && die "module dependency cycle at $name"
	if [[ -z ${modfile[$name]:-} ]]; then
		if is_builtin "$name"; then
			state[$name]='done'
			return 0
		fi
		die "module $name not found in $kpkg"
	fi
	state[$name]=busy
	module_plain "$name" "$root/lib/modules/$name.ko"
	# The .modinfo section holds NUL-separated key=value strings.
	deps=$(tr '\0' '\n' <"$root/lib/modules/$name.ko" | sed -n 's/^depends=//p' | head -n 1)
	for d in ${deps//,/ }; do
		add_module "${d//-/_}"
	done
	echo "$name" >>"$root/etc/modules"
	state[$name]='done'
}
for m in "${wanted[@]}"; do
	add_module "$m"
done

cp "$busybox" "$root/bin/busybox"
cp "$init" "$root/init"
chmod 755 "$root/init" "$root/bin/busybox"

say "kernel $kver ($kpkg), busybox $(dpkg-deb -f "$bdeb" Version)"
say "modules (load order): $(tr '\n' ' ' <"$root/etc/modules")"

(cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
	gzip -9 >"$tmp/initrd.gz"
cp "$vmlinuz" "$tmp/vmlinuz"
# Replace atomically; the initrd last, so a half-done run is never up to date.
mv -f "$tmp/vmlinuz" "$out/vmlinuz"
mv -f "$tmp/initrd.gz" "$out/initrd.gz"
{
	echo "kernel_package=$kpkg"
	echo "kernel_version=$kver"
	echo "busybox_version=$(dpkg-deb -f "$bdeb" Version)"
	echo "modules=$(tr '\n' ' ' <"$root/etc/modules")"
} >"$out/guest.info"
say "wrote $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes), $out/initrd.gz ($(stat -c %s "$out/initrd.gz") bytes)"
