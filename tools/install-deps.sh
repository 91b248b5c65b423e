#!/bin/bash
# SPDX-License-Identifier: ISC
# Install the Debian packages that building, testing and benchmarking p2pvbd
# need, but only those that are missing. Prints nothing when all are there.
set -euo pipefail

PACKAGES=(
	# Compiler, make, libc headers; pkg-config for library flags.
	build-essential pkg-config
	# Libraries p2pvbd links with, and criterion for the unit tests.
	libevent-dev libsodium-dev libcriterion-dev
	# sd_notify (readiness under systemd).
	libsystemd-dev
	# TLS on the NBD export (nbd_tls.c); psktool and certtool make keys and certificates
	# for t_nbd_tls.sh.
	libgnutls28-dev gnutls-bin
	# QMP in C (qmp.c: jansson parses QEMU's JSON); libnbd reads NBD sources (seed of an NBD URI).
	libjansson-dev libnbd-dev
	# clang for the libFuzzer harnesses; the fuzzer and sanitizer runtimes.
	clang libclang-rt-14-dev
	# b2sum (the hashing benchmark's anchor), timeout, od, du, stat; script(1) gives
	# t_progress_logs.sh a terminal; losetup gives t_blockdev.sh a block device.
	coreutils bsdutils mount
	# t_install.sh: mandoc -T lint and man -l for the man pages, systemd-analyze verify for the units.
	mandoc man-db systemd
	# t_systemd.sh: systemd-nspawn boots systemd in a container to run the installed units.
	systemd-container
	# Real NBD tools for tests and benchmark anchors: nbdkit, nbdcopy, nbdinfo, qemu-img.
	nbdkit libnbd-bin qemu-utils
	# fio --ioengine=nbd: random I/O with verification against the NBD export.
	fio
	# The test lab and process control: ip/tc, ping, ps/pgrep, fuser/killall.
	iproute2 iputils-ping procps psmisc
	# Helpers in the tests (JSON parsing of --stats); libnbd's Python binding for the
	# fault-latency and live-migration benchmarks (a client nobody here wrote).
	python3 python3-libnbd
	# The tracker's tests: curl for raw announces, libtorrent as a stock BitTorrent client.
	curl python3-libtorrent
	# /metrics read by Prometheus' own Python parser (t_tracker_metrics.sh, t_metrics.sh).
	python3-prometheus-client
	# The swarm benchmark: opentracker (the tracker's anchor), gnuplot for the progress plot.
	opentracker gnuplot-nox
	# The VM tests (tools/vm): QEMU under TCG, cpio for the guest's initramfs (the kernel and
	# busybox packages are only downloaded and unpacked by tools/vm/build-guest.sh).
	qemu-system-x86 cpio
)

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null || true)
	if ! grep -qx 'install ok installed' <<<"$status"; then
		missing+=("$p")
	fi
done
((${#missing[@]} == 0)) && exit 0

echo "install-deps: missing Debian packages: ${missing[*]}" >&2
install_cmd=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}")
if ((EUID == 0)); then
	apt-get update
	"${install_cmd[@]}"
elif command -v sudo >/dev/null; then
	sudo apt-get update
	sudo "${install_cmd[@]}"
else
	echo "install-deps: not root and no sudo; as root, run:" >&2
	echo "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}" >&2
	exit 1
fi
