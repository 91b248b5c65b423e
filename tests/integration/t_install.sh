#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: `make install DESTDIR=… PREFIX=/usr` installs the programs, the man pages and the
# systemd units where they belong, with the right modes, without root; the installed programs
# run (--version); every man page lints clean (mandoc -T lint) and renders (man -l), and
# p2pvbd(1) documents every option each command's --help lists; systemd-analyze verify accepts
# the installed units (against the installed programs and man pages); another PREFIX reaches
# the units' ExecStart; `make uninstall` removes every installed file.
#
# It installs from the repository that holds this test, with BUILD set to the directory of
# the binary under test (and SAN=1 if that binary is built with AddressSanitizer), so that
# it checks the build it was given; on a built tree `make install` builds nothing.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR=$(dirname "$P2PVBD")
PY=/usr/bin/python3
for tool in mandoc man systemd-analyze; do
	command -v "$tool" >/dev/null || fail "$tool not installed (tools/install-deps.sh)"
done

# make_in_repo ARGS...: make in the repository for the build under test, with a clean
# environment (no jobserver or flags of an outer make).
SAN_ARG=()
if ldd "$P2PVBD" 2>/dev/null | grep -q libasan; then
	SAN_ARG=(SAN=1)
fi
make_in_repo() {
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -C "$ROOT" \
		BUILD="$BIN_DIR" "${SAN_ARG[@]}" "$@"
}

# run_make NAME ARGS...: run `make ARGS` in the repository, output in $T/NAME.out.
run_make() {
	local name=$1
	shift
	make_in_repo "$@" >"$T/$name.out" 2>&1 || fail "make $* failed: $(tail -n 20 "$T/$name.out")"
}

shopt -s nullglob
MAN_PAGES=("$ROOT"/docs/man/*.[18])
UNITS=("$ROOT"/systemd/*.service)
((${#MAN_PAGES[@]} >= 1)) || fail "no man pages in docs/man"
((${#UNITS[@]} >= 2)) || fail "expected the units in systemd/, found ${#UNITS[@]}"

# The build under test must be the build of this tree: `make install` would otherwise rebuild
# it (and an unprivileged user could not).
make_in_repo -q "$BIN_DIR/p2pvbd" "$BIN_DIR/p2pvbd-tracker" ||
	fail "$BIN_DIR is older than the sources in $ROOT: run make${SAN_ARG[*]:+ ${SAN_ARG[*]}} BUILD=$BIN_DIR first"

# --- install, as an ordinary user -------------------------------------------------------------
# DESTDIR installs need no root: the tree is readable by all, so `nobody` installs into a
# directory of its own.
D=$T/dest
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null && setpriv --reuid=nobody --regid=nogroup \
	--clear-groups test -r "$P2PVBD" -a -r "$ROOT/Makefile"; then
	chmod 0711 "$T" # nobody may pass through the test's directory into its own
	mkdir -m 0777 "$T/nobody"
	D=$T/nobody/dest
	setpriv --reuid=nobody --regid=nogroup --clear-groups env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
		make --no-print-directory -C "$ROOT" BUILD="$BIN_DIR" "${SAN_ARG[@]}" install \
		DESTDIR="$D" PREFIX=/usr >"$T/install.out" 2>&1 ||
		fail "make install as nobody failed: $(tail -n 20 "$T/install.out")"
	note "make install DESTDIR=… PREFIX=/usr ran as nobody"
else
	run_make install install DESTDIR="$D" PREFIX=/usr
	note "make install DESTDIR=… PREFIX=/usr ran as $(id -un) (no unprivileged user to try)"
fi

# expect_file PATH MODE: PATH is a regular file with exactly MODE (octal).
expect_file() {
	[[ -f $1 ]] || fail "not installed: ${1#"$D"}"
	[[ $(stat -c %a "$1") == "$2" ]] || fail "${1#"$D"} has mode $(stat -c %a "$1"), expected $2"
}
expect_file "$D/usr/bin/p2pvbd" 755
expect_file "$D/usr/bin/p2pvbd-tracker" 755
cmp "$D/usr/bin/p2pvbd" "$P2PVBD" || fail "installed p2pvbd differs from $P2PVBD"
cmp "$D/usr/bin/p2pvbd-tracker" "$BIN_DIR/p2pvbd-tracker" || fail "installed tracker differs"
INSTALLED_MAN=()
for m in "${MAN_PAGES[@]}"; do
	sec=${m##*.}
	expect_file "$D/usr/share/man/man$sec/$(basename "$m")" 644
	cmp "$m" "$D/usr/share/man/man$sec/$(basename "$m")" || fail "installed $(basename "$m") differs"
	INSTALLED_MAN+=("$D/usr/share/man/man$sec/$(basename "$m")")
done
[[ -f $D/usr/share/man/man1/p2pvbd.1 ]] || fail "p2pvbd(1) not installed"
for u in "${UNITS[@]}"; do
	expect_file "$D/usr/lib/systemd/system/$(basename "$u")" 644
done
n_files=$(find "$D" -type f | wc -l)
((n_files == 2 + ${#MAN_PAGES[@]} + ${#UNITS[@]})) ||
	fail "make install made $n_files files, expected $((2 + ${#MAN_PAGES[@]} + ${#UNITS[@]})): $(find "$D" -type f)"
note "installed: 2 programs, ${#MAN_PAGES[@]} man pages, ${#UNITS[@]} units"

# --- the installed programs run ------------------------------------------------------------
out=$("$D/usr/bin/p2pvbd" --version) || fail "p2pvbd --version failed"
[[ $out == "p2pvbd "[0-9]* ]] || fail "p2pvbd --version printed: $out"
if grep -q '"version"' "$ROOT/tracker/main.c"; then
	out=$("$D/usr/bin/p2pvbd-tracker" --version) || fail "p2pvbd-tracker --version failed"
	[[ $out == "p2pvbd-tracker "[0-9]* ]] || fail "p2pvbd-tracker --version printed: $out"
else
	note "SKIP p2pvbd-tracker --version: this tree's tracker has no --version yet"
fi

# --- man pages ----------------------------------------------------------------------------
# mandoc -T lint -W style: every error, warning and style message, with cross references
# looked up along MANPATH, which holds the installed pages first (p2pvbd(1) refers to
# p2pvbd-tracker(8)). Not counted: mandoc's note that this system has no mandoc.db (it then
# searches the directories), and references to other projects' pages this system lacks.
MANPATH_ALL=$D/usr/share/man:$(manpath 2>/dev/null || echo /usr/share/man)
for m in "${INSTALLED_MAN[@]}"; do
	name=$(basename "$m")
	MANPATH=$MANPATH_ALL mandoc -T lint -W style "$m" >"$T/lint.out" 2>&1 || true
	grep -v -e '^mandoc: outdated mandoc.db lacks ' "$T/lint.out" >"$T/lint.kept" || true
	while IFS= read -r line; do
		if [[ $line =~ referenced\ manual\ not\ found:\ Xr\ ([^ ]+)\ ([0-9a-z]+) ]]; then
			ref=${BASH_REMATCH[1]}
			if [[ $ref != p2pvbd* ]] && ! MANPATH=$MANPATH_ALL man -w "${BASH_REMATCH[2]}" "$ref" >/dev/null 2>&1; then
				note "$name refers to $ref(${BASH_REMATCH[2]}), not installed here"
				continue
			fi
			# Written in parallel with p2pvbd(1); once in the tree it is installed and found.
			if [[ $ref == p2pvbd-tracker && ! -f $ROOT/docs/man/p2pvbd-tracker.8 ]]; then
				note "SKIP $name's reference to p2pvbd-tracker(8): not in this tree yet"
				continue
			fi
		fi
		fail "mandoc -T lint $name: $line"
	done <"$T/lint.kept"
	# man-db renders it with groff, warnings on.
	MANWIDTH=80 MANPAGER=cat man --warnings -l "$m" >"$T/man.out" 2>"$T/man.err" ||
		fail "man -l $name failed: $(cat "$T/man.err")"
	[[ ! -s $T/man.err ]] || fail "man -l $name warns: $(head -c 2000 "$T/man.err")"
	if ! grep -q '^NAME' "$T/man.out" || ! grep -q '^SYNOPSIS' "$T/man.out"; then
		fail "man -l $name: no NAME or SYNOPSIS section in the rendered page"
	fi
done
note "man pages: mandoc -T lint -W style clean, man -l renders without warnings"

# p2pvbd(1) documents every command and, in the command's own subsection, every option its
# --help lists (rendered by mandoc, one subsection per command).
mandoc -T ascii -O width=250 "$D/usr/share/man/man1/p2pvbd.1" | col -b >"$T/p2pvbd.txt"
for cmd in keygen seed fetch status ctl; do
	"$P2PVBD" "$cmd" --help >"$T/help-$cmd.txt" || fail "p2pvbd $cmd --help failed"
done
"$PY" - "$T" <<'EOF' || fail "p2pvbd(1) does not document every option of --help (above)"
import re, sys
t = sys.argv[1]
page = open(t + "/p2pvbd.txt").read().split("\n")
sections, cur = {}, None
for line in page:
    m = re.match(r"^   (\S+)$", line)          # a subsection heading (.Ss)
    if m:
        cur = m.group(1)
        sections[cur] = []
    elif re.match(r"^\S", line):                # a section heading (.Sh)
        cur = None
    elif cur:
        sections[cur].append(line)
everywhere = set(re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", " ".join(page)))
# Said once for all commands, in COMMANDS.
common = {"-h", "--help", "--version"}
bad = 0
for cmd in ["keygen", "seed", "fetch", "status", "ctl"]:
    if cmd not in sections:
        print("no subsection for", cmd); bad = 1; continue
    text = " ".join(sections[cmd])
    words = set(re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", text))
    for line in open("%s/help-%s.txt" % (t, cmd)):
        m = re.match(r"^\s+(?:(-\w), )?(--[a-z][a-z0-9-]*)", line)
        if not m:
            continue
        for opt in m.groups():
            if opt and opt not in (everywhere if opt in common else words):
                print("p2pvbd %s: %s is in --help but not in p2pvbd(1)" % (cmd, opt)); bad = 1
sys.exit(bad)
EOF
note "p2pvbd(1) documents every option of every command's --help"
TRACKER_PAGE=$D/usr/share/man/man8/p2pvbd-tracker.8
if [[ -f $TRACKER_PAGE ]]; then
	mandoc -T ascii -O width=250 "$TRACKER_PAGE" | col -b >"$T/tracker.txt"
	"$BIN_DIR/p2pvbd-tracker" --help >"$T/help-tracker.txt" || fail "p2pvbd-tracker --help failed"
	"$PY" - "$T" <<'EOF2' || fail "p2pvbd-tracker(8) does not document every option of --help (above)"
import re, sys
t = sys.argv[1]
words = set(re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", open(t + "/tracker.txt").read()))
bad = 0
for line in open(t + "/help-tracker.txt"):
    m = re.match(r"^\s+(?:(-\w), )?(--[a-z][a-z0-9-]*)", line)
    for opt in (m.groups() if m else ()):
        if opt and opt not in words:
            print("p2pvbd-tracker: %s is in --help but not in p2pvbd-tracker(8)" % opt); bad = 1
sys.exit(bad)
EOF2
	note "p2pvbd-tracker(8) documents every option of its --help"
fi

# --- systemd units ----------------------------------------------------------------------------
# systemd-analyze verify --root checks each unit as the installed system would load it: the
# programs in ExecStart must exist in the root, the man pages of Documentation= must be found
# (MANPATH), and the units they depend on (sysinit.target, network-online.target...) come
# from this system's own unit directory, copied beside the installed tree. verify returns 0
# on unknown keys and bad values too (it only warns), so any output at all is a failure.
VROOT=$T/vroot
mkdir -p "$VROOT/lib/systemd"
cp -a "$D/." "$VROOT/"
SYS_UNITS=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
cp -a "$SYS_UNITS" "$VROOT/lib/systemd/system"
man_check=(--man=yes)
if [[ ! -f $ROOT/docs/man/p2pvbd-tracker.8 ]]; then
	man_check=(--man=no)
	note "SKIP the man:p2pvbd-tracker(8) reference check: docs/man/p2pvbd-tracker.8 not in this tree"
fi
for unit in p2pvbd-tracker.service p2pvbd-mirror@vm1.service; do
	(cd "$T" && MANPATH=$VROOT/usr/share/man:$MANPATH_ALL systemd-analyze verify \
		--root="$VROOT" "${man_check[@]}" "$unit") >"$T/verify.out" 2>&1 ||
		fail "systemd-analyze verify $unit: $(cat "$T/verify.out")"
	[[ ! -s $T/verify.out ]] || fail "systemd-analyze verify $unit warns: $(cat "$T/verify.out")"
done
# The check can fail: without the program it names, verify refuses the unit.
rm "$VROOT/usr/bin/p2pvbd"
(cd "$T" && systemd-analyze verify --root="$VROOT" --man=no p2pvbd-mirror@vm1.service) \
	>"$T/verify.out" 2>&1 && fail "systemd-analyze verify accepted a unit whose program is missing"
grep -q 'p2pvbd' "$T/verify.out" || fail "verify failed without naming the program: $(cat "$T/verify.out")"
note "systemd-analyze verify accepts the installed units"

# Another PREFIX: the units run the programs from there.
run_make install-opt install DESTDIR="$T/opt-dest" PREFIX=/opt/p2pvbd
[[ -x $T/opt-dest/opt/p2pvbd/bin/p2pvbd ]] || fail "PREFIX=/opt/p2pvbd: no bin/p2pvbd"
for u in "${UNITS[@]}"; do
	f=$T/opt-dest/opt/p2pvbd/lib/systemd/system/$(basename "$u")
	grep -q '^ExecStart=/opt/p2pvbd/bin/p2pvbd' "$f" || fail "PREFIX=/opt/p2pvbd: $(basename "$u"): $(grep ExecStart "$f")"
	if grep -q '/usr/bin' "$f"; then fail "PREFIX=/opt/p2pvbd: $(basename "$u") still names /usr/bin"; fi
done
[[ -f $T/opt-dest/opt/p2pvbd/share/man/man1/p2pvbd.1 ]] || fail "PREFIX=/opt/p2pvbd: no man page"

# --- uninstall ----------------------------------------------------------------------------------
run_make uninstall uninstall DESTDIR="$D" PREFIX=/usr
left=$(find "$D" -type f)
[[ -z $left ]] || fail "make uninstall left: $left"
note "make uninstall removed every installed file"
