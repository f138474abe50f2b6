#!/bin/sh
# Build the minimal end-to-end test rootfs into OUTDIR (idempotent).
#
#   test/rootfs/build.sh OUTDIR
#
# OUTDIR gets: /bin/busybox (Debian's static busybox) with applet symlinks,
# /probe (test/probe/probe.c built static with musl-gcc), /glibc-probe (the
# same source built static with gcc: glibc reads sysfs for its CPU count and
# asks sysinfo for memory), /dstate (test/probe/dstate.c), empty mount points
# (/proc /sys /dev /tmp) and an /etc/passwd with root. Needs the Debian
# packages busybox-static, musl-tools and gcc (`make deps` installs them).
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)
probe_src="$here/../probe/probe.c"

die() {
	echo "rootfs: $*" >&2
	exit 1
}

# Debian's busybox-static installs /bin/busybox; the dynamic "busybox"
# package installs the same path, so check that it is really static: the
# container has no libc of its own.
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox not found: install the Debian package busybox-static (make deps)"
if command -v file >/dev/null 2>&1; then
	file -L "$busybox" | grep -q 'statically linked' ||
		die "$busybox is not statically linked: install the Debian package busybox-static instead of busybox (make deps)"
fi
command -v musl-gcc >/dev/null 2>&1 || die "musl-gcc not found: install the Debian package musl-tools (make deps)"
[ -f "$probe_src" ] || die "probe source $probe_src not found"

mkdir -p "$out/bin" "$out/etc" "$out/proc" "$out/sys" "$out/dev" "$out/tmp" "$out/root"
chmod 1777 "$out/tmp"

# Copy busybox only when it changed, so an unchanged rebuild touches nothing.
if ! cmp -s "$busybox" "$out/bin/busybox"; then
	cp "$busybox" "$out/bin/busybox.tmp"
	chmod 0755 "$out/bin/busybox.tmp"
	mv -f "$out/bin/busybox.tmp" "$out/bin/busybox"
fi
for applet in sh ash nproc free uptime cat sleep echo ls ps taskset env id \
	grep head tail true false mount top wc date hostname; do
	ln -sfn busybox "$out/bin/$applet"
done

# The probe: rebuilt when the source is newer than the binary.
if [ ! -x "$out/probe" ] || [ "$probe_src" -nt "$out/probe" ]; then
	musl-gcc -static -O2 -Wall -o "$out/probe.tmp" "$probe_src" ||
		die "musl-gcc failed to build $probe_src"
	mv -f "$out/probe.tmp" "$out/probe"
fi

# /glibc-probe: the LXCFS pairing tests compare a glibc caller's view too.
if [ ! -x "$out/glibc-probe" ] || [ "$probe_src" -nt "$out/glibc-probe" ]; then
	command -v gcc >/dev/null 2>&1 || die "gcc not found: install the Debian packages gcc and libc6-dev (make deps)"
	gcc -static -O2 -Wall -o "$out/glibc-probe.tmp" "$probe_src" ||
		die "gcc -static failed to build $probe_src (needs libc6-dev)"
	mv -f "$out/glibc-probe.tmp" "$out/glibc-probe"
fi

# dstate: one thread in state D for N seconds, the load-average tests' load
# (test/probe/dstate.c).
dstate_src="$here/../probe/dstate.c"
if [ ! -x "$out/dstate" ] || [ "$dstate_src" -nt "$out/dstate" ]; then
	musl-gcc -static -O2 -Wall -o "$out/dstate.tmp" "$dstate_src" ||
		die "musl-gcc failed to build $dstate_src"
	mv -f "$out/dstate.tmp" "$out/dstate"
fi

# hammer: the restart tests' tight loop (test/probe/hammer.c).
hammer_src="$here/../probe/hammer.c"
if [ ! -x "$out/hammer" ] || [ "$hammer_src" -nt "$out/hammer" ]; then
	musl-gcc -static -O2 -Wall -o "$out/hammer.tmp" "$hammer_src" ||
		die "musl-gcc failed to build $hammer_src"
	mv -f "$out/hammer.tmp" "$out/hammer"
fi

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$out/etc/passwd.tmp"
mv -f "$out/etc/passwd.tmp" "$out/etc/passwd"
printf 'root:x:0:\n' >"$out/etc/group.tmp"
mv -f "$out/etc/group.tmp" "$out/etc/group"
