#!/bin/sh
# Build Alpine's userland, unmodified: busybox compiled static against musl,
# from Debian's own busybox source package (upstream source + Debian's
# patches), with busybox's defconfig.
#
#   test/musl-busybox/build.sh OUTDIR
#
# Result: OUTDIR/busybox (static, musl). Idempotent and cached: when
# OUTDIR/busybox exists and was built by this version of the script, nothing
# is done. A cold build fetches the source with `apt-get source` (which needs
# a deb-src entry: one is derived from the machine's own Debian sources into
# /etc/apt/sources.list.d/seccompagent-deb-src.sources, and only that list is
# updated) and compiles for about 40 s on 2 CPUs.
#
# Needs root (for apt) on a cold cache, and the Debian packages musl-tools,
# dpkg-dev (dpkg-source), make, gcc and linux-libc-dev.
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
self="$here/build.sh"

die() {
	echo "musl-busybox: $*" >&2
	exit 1
}

stamp=$(cksum <"$self" | cut -d' ' -f1)
if [ -x "$out/busybox" ] && [ -f "$out/busybox.stamp" ] &&
	[ "$(cat "$out/busybox.stamp")" = "$stamp" ]; then
	exit 0
fi

command -v musl-gcc >/dev/null 2>&1 || die "musl-gcc not found: install the Debian package musl-tools (make deps)"
command -v make >/dev/null 2>&1 || die "make not found: install the Debian package make (make deps)"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this builds Debian's busybox source package"
command -v dpkg-source >/dev/null 2>&1 || die "dpkg-source not found: install the Debian package dpkg-dev (make deps)"

# --- 1. a deb-src entry derived from the machine's own Debian sources ------
srclist=/etc/apt/sources.list.d/seccompagent-deb-src.sources

# deb822 files: every stanza whose Types has "deb" and whose URIs point at a
# Debian archive is copied with Types: deb-src (comments dropped).
derive_deb822() {
	awk '
	function flush() {
		if (n > 0 && isdeb && isdebian && !disabled) {
			if (printed) print ""
			print "Types: deb-src"
			for (i = 1; i <= n; i++) print lines[i]
			printed = 1
		}
		n = 0; isdeb = 0; isdebian = 0; disabled = 0
	}
	/^[ \t]*#/ { next }
	/^[ \t]*$/ { flush(); next }
	/^Types:/ {
		for (i = 2; i <= NF; i++) if ($i == "deb") isdeb = 1
		next
	}
	/^Enabled:[ \t]*no/ { disabled = 1 }
	{
		if ($1 == "URIs:" && $0 ~ /\/debian(-security)?\/?([ \t]|$)/) isdebian = 1
		lines[++n] = $0
	}
	END { flush() }
	' "$@"
}

# one-line files: "deb [opts] URI suite comp..." lines of a Debian archive,
# rewritten as deb822 stanzas so that everything lands in one file of ours.
derive_oneline() {
	awk '
	$1 == "deb" {
		i = 2; opts = ""
		if ($2 ~ /^\[/) {
			while (i <= NF) { opts = opts " " $i; if ($i ~ /\]$/) { i++; break } i++ }
		}
		uri = $i; suite = $(i + 1); comps = ""
		for (j = i + 2; j <= NF; j++) comps = comps " " $j
		if (uri !~ /\/debian(-security)?\/?$/) next
		if (printed) print ""
		print "Types: deb-src"
		print "URIs: " uri
		print "Suites: " suite
		print "Components:" comps
		if (match(opts, /signed-by=[^] ]+/)) print "Signed-By: " substr(opts, RSTART + 10, RLENGTH - 10)
		printed = 1
	}
	' "$@"
}

have_source() {
	apt-get source --print-uris busybox >/dev/null 2>&1
}

if ! have_source; then
	[ "$(id -u)" = 0 ] || die "busybox source not available from apt and not root: run as root once to set up deb-src and build"
	tmp=$(mktemp)
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && [ "$f" != "$srclist" ] || continue
		derive_deb822 "$f" >>"$tmp"
		echo >>"$tmp"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		derive_oneline "$f" >>"$tmp"
		echo >>"$tmp"
	done
	grep -q '^Types: deb-src' "$tmp" || {
		rm -f "$tmp"
		die "no Debian archive entry found in /etc/apt/sources.list{,.d/*} to derive a deb-src entry from"
	}
	{
		echo "# Written by seccompagent test/musl-busybox/build.sh: deb-src entries derived"
		echo "# from this machine's own Debian sources, for apt-get source busybox."
		cat -s "$tmp"
	} >"$srclist"
	rm -f "$tmp"
	echo "musl-busybox: wrote $srclist; updating only that list" >&2
	# Update only our list, keeping every other list as it is.
	apt-get update -qq -o Dir::Etc::sourcelist="$srclist" -o Dir::Etc::sourceparts=- \
		-o APT::Get::List-Cleanup=0 || die "apt-get update of $srclist failed"
	have_source || die "apt-get source busybox still finds no source after adding $srclist"
fi

# --- 2. the source: Debian's busybox, patches applied ----------------------
src="$out/src"
dir=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' 2>/dev/null | head -n 1)
if [ -z "$dir" ] || [ ! -f "$dir/Makefile" ]; then
	rm -rf "$src"
	mkdir -p "$src"
	(cd "$src" && apt-get source -qq busybox) >"$out/apt-source.log" 2>&1 || {
		cat "$out/apt-source.log" >&2
		die "apt-get source busybox failed"
	}
	dir=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' | head -n 1)
	[ -n "$dir" ] && [ -f "$dir/Makefile" ] || die "apt-get source busybox left no source tree in $src"
fi
version=$(cd "$dir" && dpkg-parsechangelog -S Version 2>/dev/null || basename "$dir")

# --- 3. musl's include dir: kernel headers only ----------------------------
# musl-gcc searches musl's headers, not /usr/include: busybox needs the
# kernel's uapi headers, linked in one by one (never glibc's own headers).
inc="$out/include"
mkdir -p "$inc"
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
asm=/usr/include/asm
[ -d "$asm" ] || asm=/usr/include/$multiarch/asm
for pair in "linux:/usr/include/linux" "asm:$asm" "asm-generic:/usr/include/asm-generic" "mtd:/usr/include/mtd"; do
	name=${pair%%:*}
	target=${pair#*:}
	[ -d "$target" ] || die "$target not found: install the Debian package linux-libc-dev"
	ln -sfn "$target" "$inc/$name"
done

# --- 4. configure and build ------------------------------------------------
set_config() { # NAME VALUE ("y", "n" or a quoted string)
	sed -i -e "/^CONFIG_$1=/d" -e "/^# CONFIG_$1 is not set/d" "$dir/.config"
	if [ "$2" = n ]; then
		echo "# CONFIG_$1 is not set" >>"$dir/.config"
	else
		echo "CONFIG_$1=$2" >>"$dir/.config"
	fi
}

log="$out/build.log"
: >"$log"
(
	cd "$dir"
	make -s distclean >/dev/null 2>&1 || true
	make -s defconfig >>"$log" 2>&1
	set_config STATIC y
	set_config EXTRA_CFLAGS "\"-I$inc\""
	# Applets that do not build against musl or current kernel headers
	# (tc: TCA_CBQ_* were removed from the uapi headers in Linux 6.x).
	set_config TC n
	set_config FEATURE_TC_INGRESS n
	yes "" | make CC=musl-gcc oldconfig >>"$log" 2>&1
	make -j"$(nproc 2>/dev/null || echo 2)" CC=musl-gcc busybox >>"$log" 2>&1
) || {
	tail -n 40 "$log" >&2
	die "build failed (full log: $log)"
}

bin="$dir/busybox"
[ -x "$bin" ] || die "no busybox binary after the build (log: $log)"
if command -v file >/dev/null 2>&1; then
	file "$bin" | grep -q 'statically linked' || die "$bin is not static"
fi
cp "$bin" "$out/busybox.tmp"
mv -f "$out/busybox.tmp" "$out/busybox"
echo "$version" >"$out/busybox.version"
echo "$stamp" >"$out/busybox.stamp"
echo "musl-busybox: built $out/busybox from Debian's busybox $version" >&2
