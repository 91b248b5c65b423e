#!/bin/bash
# SPDX-License-Identifier: ISC
# The test lab: hosts in network namespaces, joined by a bridge, with per-host
# bandwidth shaping (DESIGN.md section 6). Needs root, iproute2 (ip, tc).
#
#   tools/lab.sh up NAME N [--up-mbit R] [--down-mbit R]
#       Make lab NAME with hosts h1..hN (1 <= N <= 200): one network namespace
#       per host (NAME-h1 ... NAME-hN) and one for the bridge (NAME-br). Host i
#       has interface eth0, one end of a veth pair whose other end (named hI)
#       is a port of bridge br0 inside NAME-br. Nothing is created in the root
#       namespace: the host's own network is never touched. Host i gets
#       10.X.0.i/24 with X = 1 + (cksum of NAME) mod 254, i.e. a /24 in
#       10.1.0.0 .. 10.254.0.0; the address exists only inside the lab, so
#       labs are isolated even when X collides, and X just keeps different
#       labs' addresses apart in logs. Loopback is up everywhere, IPv6 is off
#       (no stray traffic on shaped links). --up-mbit/--down-mbit shape every
#       host (see shape). Fails if the lab exists; if up fails or is
#       interrupted, it removes whatever it created.
#   tools/lab.sh shape NAME HOST UP_MBIT DOWN_MBIT
#       Shape one host (HOST is h2 or 2), replacing any earlier shaping.
#       Upload = egress of eth0 inside NAME-hI; download = egress of the
#       bridge port hI inside NAME-br (towards the host). Rates in Mbit/s
#       (decimals allowed, e.g. 0.5); 0 means unshaped. Each shaped direction
#       is an HTB root (handle 1:) with one class 1:1, rate = ceil = R,
#       burst = cburst = max(64 KiB, 10 ms at R) so that one 64 KiB GSO packet
#       of the veth always fits, and a bfifo leaf holding ~100 ms at R (at
#       least 192 KiB), so queues stay short. `tc -s class show` shows it.
#   tools/lab.sh exec NAME HOST CMD ARGS...
#       Run CMD inside the host's namespace (ip netns exec); its exit status
#       is passed through.
#   tools/lab.sh addr NAME HOST     Print the host's IPv4 address.
#   tools/lab.sh ns NAME HOST       Print the host's namespace name (NAME-hI).
#   tools/lab.sh down NAME
#       Delete lab NAME: processes still running in its namespaces get
#       SIGTERM, then SIGKILL after LAB_KILL_GRACE_S seconds (default 5);
#       then the namespaces go (and with them the veths and the bridge).
#       Also removes leftovers of a half-made lab. No error if it is gone.
#   tools/lab.sh list               Print the names of the labs that exist.
#   tools/lab.sh help               This text.
#
# NAME: 1-40 characters of [A-Za-z0-9_-], starting with a letter or digit.
#
# Sourced (". tools/lab.sh") it only defines functions, for tests and benchmarks:
#   lab_up NAME N [--up-mbit R] [--down-mbit R]   lab_shape NAME HOST UP DOWN
#   lab_exec NAME HOST CMD...   lab_addr NAME HOST   lab_ns NAME HOST
#   lab_down NAME   lab_list   lab_trap NAME
# They return non-zero (with a message on stderr) instead of exiting, and work
# with or without set -e. Always make sure the lab goes away:
#   - lab_trap NAME (call it right after sourcing tests/integration/lib.sh and
#     BEFORE lab_up) puts "lab_down NAME" in front of the current EXIT, INT
#     and TERM traps, keeping them (lib.sh's cleanup still runs after it, and
#     its INT/TERM traps still exit 130/143). Call it again after anyone
#     replaces those traps. This is what tests/integration/t_lab.sh does.
#   - Or call lab_down NAME from your own cleanup function.
# For a background process whose PID you track (bg_start in lib.sh), run
# ip netns exec directly so that the PID is the process itself, not a shell:
#   bg_start "$T/seed.log" ip netns exec "$(lab_ns NAME h1)" "$P2PVBD" seed ...
# (lab_down kills whatever is left inside the lab's namespaces anyway).

# Seconds lab_down waits after SIGTERM before SIGKILL.
LAB_KILL_GRACE_S=${LAB_KILL_GRACE_S:-5}
LAB_MAX_HOSTS=200

_lab_err() {
	echo "lab: $*" >&2
}

# _lab_run CMD ARGS...: run a command; on failure say which and return 1.
_lab_run() {
	"$@" || {
		_lab_err "failed: $*"
		return 1
	}
}

_lab_check_name() {
	if [[ ! ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$ ]]; then
		_lab_err "bad lab name '${1:-}' (1-40 of [A-Za-z0-9_-], starting with a letter or digit)"
		return 2
	fi
}

# _lab_check_rate R: a non-negative decimal number of Mbit/s.
_lab_check_rate() {
	if [[ ! ${1:-} =~ ^[0-9]{1,6}(\.[0-9]{1,3})?$ ]]; then
		_lab_err "bad rate '${1:-}' (Mbit/s, e.g. 40 or 0.5; 0 = unshaped)"
		return 2
	fi
}

# _lab_subnet NAME: X of 10.X.0.0/24, 1..254.
_lab_subnet() {
	local sum
	sum=$(printf '%s' "$1" | cksum) || return 1
	echo $((1 + ${sum%% *} % 254))
}

# _lab_namespaces: every network namespace name, one per line.
_lab_namespaces() {
	ip netns list 2>/dev/null | awk '{ print $1 }'
}

# _lab_ns_exists NS
_lab_ns_exists() {
	# (grep reads everything: no SIGPIPE for ip under pipefail)
	[[ -e /run/netns/$1 ]] || _lab_namespaces | grep -xF -- "$1" >/dev/null
}

# _lab_host_index HOST: 2 for h2 or 2.
_lab_host_index() {
	local h=${1:-}
	h=${h#h}
	if [[ ! $h =~ ^[1-9][0-9]{0,2}$ ]] || ((h > LAB_MAX_HOSTS)); then
		_lab_err "bad host '${1:-}' (h1 .. h$LAB_MAX_HOSTS)"
		return 2
	fi
	echo "$h"
}

# lab_ns NAME HOST: the host's namespace name (it must exist).
lab_ns() {
	local i
	_lab_check_name "${1:-}" || return
	i=$(_lab_host_index "${2:-}") || return
	if ! _lab_ns_exists "$1-h$i"; then
		_lab_err "no host h$i in lab $1"
		return 1
	fi
	echo "$1-h$i"
}

# lab_addr NAME HOST: the host's IPv4 address, as configured.
lab_addr() {
	local ns a
	ns=$(lab_ns "$@") || return
	a=$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '!n++ { sub("/.*", "", $4); print $4 }')
	if [[ -z $a ]]; then
		_lab_err "host $2 of lab $1 has no address"
		return 1
	fi
	echo "$a"
}

# lab_exec NAME HOST CMD ARGS...: run CMD in the host's namespace.
lab_exec() {
	local ns
	if (($# < 3)); then
		_lab_err "usage: exec NAME HOST CMD ARGS..."
		return 2
	fi
	ns=$(lab_ns "$1" "$2") || return
	shift 2
	ip netns exec "$ns" "$@"
}

# _lab_shape_dev NS DEV MBIT: HTB shaping of DEV's egress in NS (0: none).
_lab_shape_dev() {
	local ns=$1 dev=$2 mbit=$3 kbit burst limit
	# Drop earlier shaping; failing means there was none.
	tc -n "$ns" qdisc del dev "$dev" root 2>/dev/null || true
	if awk -v r="$mbit" 'BEGIN { exit !(r == 0) }'; then
		return 0
	fi
	# Integer kbit for tc; burst: 10 ms at the rate, at least 64 KiB;
	# queue: 100 ms at the rate, at least 192 KiB.
	kbit=$(awk -v r="$mbit" 'BEGIN { k = int(r * 1000 + 0.5); print (k < 8 ? 8 : k) }')
	burst=$(awk -v k="$kbit" 'BEGIN { b = int(k * 1000 / 8 / 100); print (b < 65536 ? 65536 : b) }')
	limit=$(awk -v k="$kbit" 'BEGIN { l = int(k * 1000 / 8 / 10); print (l < 196608 ? 196608 : l) }')
	_lab_run tc -n "$ns" qdisc add dev "$dev" root handle 1: htb default 1 || return
	_lab_run tc -n "$ns" class add dev "$dev" parent 1: classid 1:1 htb \
		rate "${kbit}kbit" ceil "${kbit}kbit" burst "$burst" cburst "$burst" quantum 65536 || return
	_lab_run tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: bfifo limit "$limit" || return
}

# lab_shape NAME HOST UP_MBIT DOWN_MBIT
lab_shape() {
	local ns i
	if (($# != 4)); then
		_lab_err "usage: shape NAME HOST UP_MBIT DOWN_MBIT"
		return 2
	fi
	_lab_check_rate "$3" || return
	_lab_check_rate "$4" || return
	ns=$(lab_ns "$1" "$2") || return
	i=${ns##*-h}
	_lab_shape_dev "$ns" eth0 "$3" || return
	_lab_shape_dev "$1-br" "h$i" "$4" || return
}

# _lab_up_steps NAME N UP DOWN: everything of lab_up after NAME-br exists.
_lab_up_steps() {
	local name=$1 n=$2 up=$3 down=$4 x i ns br=$1-br
	x=$(_lab_subnet "$name") || return
	_lab_run ip -n "$br" link set lo up || return
	ip netns exec "$br" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
	ip netns exec "$br" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
	_lab_run ip -n "$br" link add br0 type bridge stp_state 0 forward_delay 0 || return
	_lab_run ip -n "$br" link set br0 up || return
	for ((i = 1; i <= n; i++)); do
		ns=$name-h$i
		_lab_run ip netns add "$ns" || return
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
		ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
		_lab_run ip -n "$ns" link set lo up || return
		# Made inside the host namespace, the peer sent straight to the bridge's.
		_lab_run ip -n "$ns" link add eth0 type veth peer name "h$i" netns "$br" || return
		_lab_run ip -n "$br" link set "h$i" master br0 || return
		_lab_run ip -n "$br" link set "h$i" up || return
		_lab_run ip -n "$ns" addr add "10.$x.0.$i/24" dev eth0 || return
		_lab_run ip -n "$ns" link set eth0 up || return
		if [[ $up != 0 || $down != 0 ]]; then
			lab_shape "$name" "h$i" "$up" "$down" || return
		fi
	done
}

# lab_up NAME N [--up-mbit R] [--down-mbit R]
lab_up() {
	local name=${1:-} n=${2:-} up=0 down=0
	if (($# < 2)); then
		_lab_err "usage: up NAME N [--up-mbit R] [--down-mbit R]"
		return 2
	fi
	shift 2
	while (($# > 0)); do
		case $1 in
		--up-mbit | --down-mbit)
			if (($# < 2)); then
				_lab_err "$1 needs a value"
				return 2
			fi
			_lab_check_rate "$2" || return
			if [[ $1 == --up-mbit ]]; then up=$2; else down=$2; fi
			shift 2
			;;
		*)
			_lab_err "up: unknown argument '$1'"
			return 2
			;;
		esac
	done
	_lab_check_name "$name" || return
	if [[ ! $n =~ ^[1-9][0-9]{0,2}$ ]] || ((n > LAB_MAX_HOSTS)); then
		_lab_err "bad host count '$n' (1 .. $LAB_MAX_HOSTS)"
		return 2
	fi
	# Creating NAME-br claims the name: it fails if the lab exists (even
	# when two ups race), and then nothing of the other lab is touched.
	if _lab_ns_exists "$name-br" || ! ip netns add "$name-br" 2>/dev/null; then
		_lab_err "lab $name exists (tools/lab.sh down $name)"
		return 1
	fi
	_LAB_UP_CLAIMED=$name
	if ! _lab_up_steps "$name" "$n" "$up" "$down"; then
		_lab_err "up $name failed; removing what was made"
		lab_down "$name" || true
		_LAB_UP_CLAIMED=
		return 1
	fi
	_LAB_UP_CLAIMED=
}

# Name of the lab that lab_up is making right now (for _lab_up_interrupted).
_LAB_UP_CLAIMED=

# _lab_up_interrupted STATUS: signal during "up": remove the half-made lab
# (only if this process created it), exit STATUS.
_lab_up_interrupted() {
	trap - INT TERM
	if [[ -n $_LAB_UP_CLAIMED ]]; then
		_lab_err "interrupted; removing lab $_LAB_UP_CLAIMED"
		lab_down "$_LAB_UP_CLAIMED" || true
	fi
	exit "$1"
}

# _lab_own_namespaces NAME: NAME-br and NAME-h<digits> that exist.
_lab_own_namespaces() {
	local re
	re="^$1-(br|h[0-9]+)\$"
	_lab_namespaces | grep -E -- "$re" || true
}

# _lab_pids NS...: PIDs of processes in those namespaces, except this shell.
_lab_pids() {
	local ns
	for ns in "$@"; do
		ip netns pids "$ns" 2>/dev/null || true
	done | grep -vxF -e "$$" -e "${BASHPID:-$$}" | sort -un || true
}

# lab_down NAME: kill what runs in the lab, delete its namespaces.
lab_down() {
	local name=${1:-} nss pids pid i ns
	if (($# != 1)); then
		_lab_err "usage: down NAME"
		return 2
	fi
	_lab_check_name "$name" || return
	mapfile -t nss < <(_lab_own_namespaces "$name")
	((${#nss[@]} > 0)) || return 0
	mapfile -t pids < <(_lab_pids "${nss[@]}")
	if ((${#pids[@]} > 0)); then
		for pid in "${pids[@]}"; do
			kill -TERM "$pid" 2>/dev/null || true
		done
		for ((i = 0; i < LAB_KILL_GRACE_S * 10; i++)); do
			mapfile -t pids < <(_lab_pids "${nss[@]}")
			((${#pids[@]} > 0)) || break
			sleep 0.1
		done
		if ((${#pids[@]} > 0)); then
			_lab_err "down $name: pids ${pids[*]} ignored SIGTERM; sending SIGKILL"
			for pid in "${pids[@]}"; do
				kill -KILL "$pid" 2>/dev/null || true
			done
			for ((i = 0; i < 50; i++)); do
				mapfile -t pids < <(_lab_pids "${nss[@]}")
				((${#pids[@]} > 0)) || break
				sleep 0.1
			done
		fi
	fi
	# Host namespaces first (each takes its veth and the bridge port along),
	# the bridge last.
	local rc=0
	for ns in "${nss[@]}"; do
		[[ $ns == "$name-br" ]] && continue
		ip netns del "$ns" 2>/dev/null || true
		if _lab_ns_exists "$ns"; then rc=1; fi
	done
	ip netns del "$name-br" 2>/dev/null || true
	if _lab_ns_exists "$name-br"; then rc=1; fi
	if ((rc != 0)); then
		_lab_err "down $name: could not delete every namespace: $(_lab_own_namespaces "$name" | tr '\n' ' ')"
		return 1
	fi
	return 0
}

# lab_list: the labs that exist (those with a NAME-br namespace holding br0).
lab_list() {
	local ns
	while read -r ns; do
		[[ $ns == *-br ]] || continue
		ip -n "$ns" link show br0 >/dev/null 2>&1 || continue
		echo "${ns%-br}"
	done < <(_lab_namespaces)
}

# lab_trap NAME: run "lab_down NAME" first on EXIT, INT and TERM, then the
# trap that was there before (if any).
lab_trap() {
	local name=${1:-} sig cur old cmd
	_lab_check_name "$name" || return
	for sig in EXIT INT TERM; do
		cur=$(trap -p "$sig")
		old=
		if [[ -n $cur ]]; then
			# trap -p prints: trap -- 'CMD' SIG, quoted for eval.
			local -a parts
			eval "parts=($cur)"
			old=${parts[2]:-}
			# An ignored signal stays ignored.
			[[ -z $old && $sig != EXIT ]] && continue
		fi
		cmd="lab_down $name || true"
		[[ -n $old ]] && cmd="$cmd; $old"
		# shellcheck disable=SC2064 # expand now: NAME and the old trap are fixed.
		trap "$cmd" "$sig"
	done
}

_lab_help() {
	sed -n '2,/^$/{/^#/!q;s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}"
}

_lab_main() {
	local cmd=${1:-help}
	(($# > 0)) && shift
	case $cmd in
	up)
		if ((EUID != 0)); then
			_lab_err "must be root"
			exit 1
		fi
		# Interrupted half-way: remove what this process made.
		trap '_lab_up_interrupted 130' INT
		trap '_lab_up_interrupted 143' TERM
		lab_up "$@"
		;;
	shape) lab_shape "$@" ;;
	exec)
		local ns
		if (($# < 3)); then
			_lab_err "usage: exec NAME HOST CMD ARGS..."
			exit 2
		fi
		ns=$(lab_ns "$1" "$2")
		shift 2
		exec ip netns exec "$ns" "$@"
		;;
	addr)
		(($# == 2)) || {
			_lab_err "usage: addr NAME HOST"
			exit 2
		}
		lab_addr "$@"
		;;
	ns)
		(($# == 2)) || {
			_lab_err "usage: ns NAME HOST"
			exit 2
		}
		lab_ns "$@"
		;;
	down) lab_down "$@" ;;
	list)
		(($# == 0)) || {
			_lab_err "usage: list"
			exit 2
		}
		lab_list
		;;
	help | -h | --help) _lab_help ;;
	*)
		_lab_err "unknown command '$cmd'"
		_lab_help >&2
		exit 2
		;;
	esac
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	_lab_main "$@"
fi
