# SPDX-License-Identifier: ISC
# shellcheck shell=bash
# Benchmark cases that cannot stop each other (sourced by tools/bench*.sh).
#
#   bench_init NAME OUTFILE   once, after the script has its work directory $T; NAME is the
#                             benchmark ("bench-live"), OUTFILE its result file in bench-out/
#   bench_case CASE TIMEOUT_S FUNCTION [ARGS...]
#                             run FUNCTION ARGS as one case, bounded by TIMEOUT_S seconds
#   bench_finish              at the end: exit 1 (naming the failed cases) if any failed
#
# A case runs in a subshell of its own, in a process group of its own. When it fails (`fail`,
# a command that stops it under set -e, or its time is up), one line goes to stdout and to
# OUTFILE, like the result lines:
#   {"bench": NAME, "case": CASE, "failed": true, "error": "the reason"}
# and the script goes on with its next case. Cleaning up after a case, whatever its end:
# the processes it started with bg_start (tests/integration/lib.sh) are stopped, then the
# script's bench_case_cleanup function runs if it has one (lab_down, for instance), in the
# case's shell; any process left in the case's process group is then killed. A case that
# outlives TIMEOUT_S gets SIGTERM (its whole process group, so that foreground commands die
# too and its cleanup runs), and SIGKILL BENCH_KILL_GRACE_S (30) seconds later. INT or TERM
# to the script stops the running case the same way and exits.
#
# A case's results must reach the rest of the script through files (or its own output): the
# subshell's variables go away with it.
#
# Environment, for every script that uses this:
#   BENCH_TIMEOUT=S        every case's limit, in seconds, instead of the script's defaults.
#   BENCH_FAIL_CASE=LIST   comma-separated case names (glob patterns: '*' is every case) that
#                          fail on purpose as they start; NAME:hang instead hangs (a sleeping
#                          child and a sleeping foreground command) until the case's time is
#                          up. For testing this harness (tests/integration/t_bench_harness.sh).

BENCH_NAME=
BENCH_OUT_FILE=
BENCH_FAILED=()
BENCH_NCASES=0
BENCH_KILL_GRACE_S=${BENCH_KILL_GRACE_S:-30}
_BENCH_PID=

# bench_init NAME OUTFILE: see above. $T must exist.
bench_init() {
	BENCH_NAME=$1
	BENCH_OUT_FILE=$2
	[[ -d ${T:-} ]] || {
		echo "bench_lib: bench_init needs the work directory \$T" >&2
		exit 1
	}
}

# bench_timeout DEFAULT_S: the limit of a case, BENCH_TIMEOUT if it is set.
bench_timeout() {
	echo "${BENCH_TIMEOUT:-$1}"
}

# bench_case CASE TIMEOUT_S FUNCTION [ARGS...]: see above. Always returns 0.
bench_case() {
	local name=$1 limit=$2 rc=0 deadline timed_out="" reason old_int old_term i
	shift 2
	BENCH_NCASES=$((BENCH_NCASES + 1))
	rm -f "$T/.bench-case-reason" "$T/.bench-case-err"
	old_int=$(trap -p INT)
	old_term=$(trap -p TERM)
	trap '_bench_abort 130' INT
	trap '_bench_abort 143' TERM
	# Job control for one moment: the case becomes the leader of a new process group.
	set -m
	(
		set +m
		_bench_case_run "$name" "$@"
	) &
	_BENCH_PID=$!
	set +m
	# Polled rather than waited for, so that the limit holds whatever the case is doing:
	# every 0.1 s for the first 5 s (a case that fails at once), then every second.
	deadline=$((SECONDS + limit))
	for ((i = 0; ; i++)); do
		kill -0 "$_BENCH_PID" 2>/dev/null || break
		if ((SECONDS >= deadline)); then
			timed_out=1
			echo "$BENCH_NAME: case $name: not finished after $limit s; stopping it" >&2
			_bench_kill_case
			break
		fi
		if ((i < 50)); then sleep 0.1; else sleep 1; fi
	done
	wait "$_BENCH_PID" || rc=$?
	_bench_kill_group "$_BENCH_PID"
	_BENCH_PID=
	eval "${old_int:-trap - INT}"
	eval "${old_term:-trap - TERM}"
	((rc != 0)) || [[ -n $timed_out ]] || return 0
	if [[ -n $timed_out ]]; then
		reason="timed out after $limit s (BENCH_TIMEOUT changes the limit)"
	elif [[ -s $T/.bench-case-reason ]]; then
		reason=$(tail -n 1 "$T/.bench-case-reason")
	elif [[ -s $T/.bench-case-err ]]; then
		reason=$(tail -n 1 "$T/.bench-case-err")
	else
		reason="exited with status $rc"
	fi
	_bench_failed "$name" "$reason"
	return 0
}

# bench_finish: exit 1 if any case failed, 0 otherwise.
bench_finish() {
	if ((${#BENCH_FAILED[@]} > 0)); then
		echo "$BENCH_NAME: ${#BENCH_FAILED[@]} of $BENCH_NCASES cases FAILED: ${BENCH_FAILED[*]}" >&2
		exit 1
	fi
	exit 0
}

# _bench_failed CASE REASON: the failure line, on stdout and in the result file.
_bench_failed() {
	local line
	BENCH_FAILED+=("$1")
	line=$(python3 -c 'import json, sys
print(json.dumps({"bench": sys.argv[1], "case": sys.argv[2], "failed": True,
                  "error": sys.argv[3]}))' "$BENCH_NAME" "$1" "$2")
	echo "$BENCH_NAME: case $1 FAILED: $2" >&2
	echo "$line"
	echo "$line" >>"$BENCH_OUT_FILE"
}

# _bench_case_run CASE FUNCTION [ARGS...]: the body of the case's subshell.
_bench_case_run() {
	local name=$1 pat pats
	shift
	# The PIDs the script had started before this case: not the case's to stop.
	_BENCH_PIDS0=" "
	if declare -p PIDS >/dev/null 2>&1; then
		_BENCH_PIDS0=" ${PIDS[*]} "
	fi
	# fail (lib.sh) writes its reason here; a command that stops the case writes its own into
	# .bench-case-err, the reason only if fail gave none (fail inside $(...) is followed by the
	# failure of the assignment, which would hide fail's better message).
	BENCH_FAIL_FILE=$T/.bench-case-reason
	set -eE
	trap '_bench_err $? "$BASH_COMMAND" "$LINENO"' ERR
	trap _bench_case_exit EXIT
	trap 'exit 143' TERM
	trap 'exit 130' INT
	IFS=, read -ra pats <<<"${BENCH_FAIL_CASE:-}"
	for pat in "${pats[@]}"; do
		# shellcheck disable=SC2053 # the pattern is a glob on purpose
		if [[ $name == ${pat%:hang} ]]; then
			if [[ $pat == *:hang ]]; then
				echo "$BENCH_NAME: case $name: hanging on purpose (BENCH_FAIL_CASE)" >&2
				# $$ in the argument lets a test find what this left behind.
				sleep "3600.$$" &
				declare -p PIDS >/dev/null 2>&1 && PIDS+=("$!")
				sleep "3600.$$"
			fi
			echo "failed on purpose (BENCH_FAIL_CASE=$BENCH_FAIL_CASE)" >"$BENCH_FAIL_FILE"
			exit 1
		fi
	done
	"$@"
}

# _bench_err STATUS COMMAND LINE: the ERR trap of a case.
_bench_err() {
	echo "line $3: '$2' exited with status $1" >"$T/.bench-case-err"
}

# _bench_case_exit: the EXIT trap of a case: stop what it started.
_bench_case_exit() {
	local rc=$? pid
	trap - ERR
	set +e
	if declare -p PIDS >/dev/null 2>&1; then
		for pid in "${PIDS[@]}"; do
			[[ $_BENCH_PIDS0 == *" $pid "* ]] || stop_pid "$pid"
		done
	fi
	if declare -F bench_case_cleanup >/dev/null; then
		bench_case_cleanup
	fi
	exit "$rc"
}

# _bench_kill_case: SIGTERM to the running case's process group, SIGKILL after the grace.
_bench_kill_case() {
	local i
	kill -TERM -- "-$_BENCH_PID" 2>/dev/null || true
	for ((i = 0; i < BENCH_KILL_GRACE_S * 10; i++)); do
		kill -0 "$_BENCH_PID" 2>/dev/null || return 0
		sleep 0.1
	done
	echo "$BENCH_NAME: the case ignored SIGTERM for $BENCH_KILL_GRACE_S s; sending SIGKILL" >&2
	kill -KILL -- "-$_BENCH_PID" 2>/dev/null || true
	# Its own cleanup did not finish: the script's part of it runs here.
	if declare -F bench_case_cleanup >/dev/null; then
		bench_case_cleanup || true
	fi
}

# _bench_kill_group PGID: kill what is left of a finished case's process group.
_bench_kill_group() {
	local i
	kill -0 -- "-$1" 2>/dev/null || return 0
	kill -TERM -- "-$1" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 -- "-$1" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- "-$1" 2>/dev/null || true
}

# _bench_abort STATUS: INT or TERM during a case: stop the case, then exit (the script's
# EXIT trap does the rest of its cleanup).
_bench_abort() {
	if [[ -n $_BENCH_PID ]]; then
		_bench_kill_case
		wait "$_BENCH_PID" 2>/dev/null || true
		_bench_kill_group "$_BENCH_PID"
	fi
	exit "$1"
}
