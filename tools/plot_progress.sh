#!/bin/bash
# SPDX-License-Identifier: ISC
# Plot swarm progress: tools/plot_progress.sh CSV OUT.png TITLE [T_MIN_SECONDS]
#
# CSV holds samples "time_s,name,fraction" (fraction 0..1), one per line, in
# any order; lines whose first field is not a number (a header such as
# "time_s,name,fraction") are skipped. Draws one line per name: percent
# complete against seconds, names in natural order (h3 before h10). With
# T_MIN_SECONDS, a dashed vertical line labelled "T_min" marks that time.
# Uses gnuplot's pngcairo terminal if it has one, else png. With more than 24
# names the legend is left out (the lines would not be told apart anyway).
set -euo pipefail

if (($# < 3 || $# > 4)); then
	echo "usage: $0 CSV OUT.png TITLE [T_MIN_SECONDS]" >&2
	exit 2
fi
csv=$1 out=$2 title=$3 tmin=${4:-}
command -v gnuplot >/dev/null || {
	echo "plot_progress: gnuplot not found" >&2
	exit 1
}
[[ -r $csv ]] || {
	echo "plot_progress: cannot read $csv" >&2
	exit 1
}
num_re='^[0-9]+([.][0-9]*)?([eE][-+]?[0-9]+)?$'
if [[ -n $tmin && ! $tmin =~ $num_re ]]; then
	echo "plot_progress: bad T_MIN_SECONDS '$tmin'" >&2
	exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/plot_progress.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

num_awk='^-?[0-9]+([.][0-9]*)?([eE][-+]?[0-9]+)?$'
# The names, in natural order (h3 before h10).
awk -F, -v re="$num_awk" '$1 ~ re && NF >= 3 { print $2 }' "$csv" | sort -uV >"$tmp/names.txt"
[[ -s $tmp/names.txt ]] || {
	echo "plot_progress: no samples in $csv" >&2
	exit 1
}
# One gnuplot data block per name, in names.txt order (blocks separated by
# two blank lines, so "index i" selects one), each sorted by time, as
# "time percent".
awk -F, -v re="$num_awk" -v dat="$tmp/data" '
	FILENAME == ARGV[1] { idx[$0] = n++; next }
	$1 ~ re && NF >= 3 {
		k = idx[$2]; c = ++cnt[k]
		t[k, c] = $1 + 0; f[k, c] = $3 * 100
	}
	END {
		for (k = 0; k < n; k++) {
			# insertion sort by time (samples are nearly sorted already)
			m = cnt[k]
			for (i = 2; i <= m; i++) {
				tt = t[k, i]; ff = f[k, i]
				for (j = i - 1; j >= 1 && t[k, j] > tt; j--) { t[k, j + 1] = t[k, j]; f[k, j + 1] = f[k, j] }
				t[k, j + 1] = tt; f[k, j + 1] = ff
			}
			if (k > 0) printf "\n\n" > dat
			for (i = 1; i <= m; i++) printf "%.6f %.4f\n", t[k, i], f[k, i] > dat
		}
	}' "$tmp/names.txt" "$csv"
mapfile -t names <"$tmp/names.txt"
xmax=$(awk -v tmin="${tmin:-0}" 'NF == 2 && $1 > m { m = $1 } END { if (tmin > m) m = tmin; print (m > 0 ? m * 1.05 : 1) }' "$tmp/data")

if echo 'set terminal' | gnuplot 2>&1 | grep -qw pngcairo; then
	term='pngcairo size 1000,600 noenhanced font ",11"'
else
	term='png size 1000,600 noenhanced'
fi

# gq STRING: STRING as a gnuplot double-quoted string.
gq() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '"%s"' "$s"
}

{
	echo "set terminal $term"
	echo "set output $(gq "$out")"
	echo "set title $(gq "$title")"
	echo "set xlabel \"time (s)\""
	echo "set ylabel \"complete (%)\""
	echo "set xrange [0:$xmax]"
	echo "set yrange [0:105]"
	echo "set ytics 0,10,100"
	echo "set grid"
	if ((${#names[@]} > 24)); then
		echo "set key off"
	else
		echo "set key outside right top"
	fi
	if [[ -n $tmin ]]; then
		echo "set arrow from $tmin, graph 0 to $tmin, graph 1 nohead lw 2 dt 2 lc rgb \"black\""
		echo "set label \"T_min\" at $tmin, graph 0.03 offset 0.5,0 left textcolor rgb \"black\""
	fi
	printf 'plot'
	for i in "${!names[@]}"; do
		((i > 0)) && printf ','
		printf ' %s index %d using 1:2 with lines lw 2 title %s' "$(gq "$tmp/data")" "$i" "$(gq "${names[i]}")"
	done
	printf '\n'
} >"$tmp/plot.gp"

gnuplot "$tmp/plot.gp"
[[ -s $out ]] || {
	echo "plot_progress: gnuplot wrote nothing to $out" >&2
	exit 1
}
