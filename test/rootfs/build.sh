#!/bin/sh
# Build the minimal end-to-end test rootfs into OUTDIR (idempotent).
#
#   test/rootfs/build.sh OUTDIR
#
# OUTDIR gets: /bin/busybox (Debian's static busybox) with applet symlinks,
# /probe (test/probe/probe.c built static with musl-gcc), /affinity and
# /affinity32 (x86_64 and i386), /timens, empty mount points (/proc /sys
# /dev /tmp) and an /etc/passwd with root. Needs the Debian packages
# busybox-static, musl-tools and gcc-multilib (`make deps` installs them).
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
command -v gcc >/dev/null 2>&1 || die "gcc not found: install the Debian packages gcc and gcc-multilib (make deps)"
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

# hammer: the restart tests' tight loop (test/probe/hammer.c).
hammer_src="$here/../probe/hammer.c"
if [ ! -x "$out/hammer" ] || [ "$hammer_src" -nt "$out/hammer" ]; then
	musl-gcc -static -O2 -Wall -o "$out/hammer.tmp" "$hammer_src" ||
		die "musl-gcc failed to build $hammer_src"
	mv -f "$out/hammer.tmp" "$out/hammer"
fi

# affinity: sched_getaffinity with pid != 0 (test/probe/affinity.c), once
# for x86_64 (musl) and once for i386 (gcc -m32, glibc static: the
# multilib C library), so both syscall entry points are trapped.
affinity_src="$here/../probe/affinity.c"
if [ ! -x "$out/affinity" ] || [ "$affinity_src" -nt "$out/affinity" ]; then
	musl-gcc -static -O2 -Wall -o "$out/affinity.tmp" "$affinity_src" ||
		die "musl-gcc failed to build $affinity_src"
	mv -f "$out/affinity.tmp" "$out/affinity"
fi
if [ ! -x "$out/affinity32" ] || [ "$affinity_src" -nt "$out/affinity32" ]; then
	gcc -m32 -static -O2 -Wall -pthread -o "$out/affinity32.tmp" "$affinity_src" ||
		die "gcc -m32 failed to build $affinity_src: install the Debian package gcc-multilib (make deps)"
	mv -f "$out/affinity32.tmp" "$out/affinity32"
fi

# timens: sysinfo uptime in a time namespace (test/probe/timens.c).
timens_src="$here/../probe/timens.c"
if [ ! -x "$out/timens" ] || [ "$timens_src" -nt "$out/timens" ]; then
	musl-gcc -static -O2 -Wall -o "$out/timens.tmp" "$timens_src" ||
		die "musl-gcc failed to build $timens_src"
	mv -f "$out/timens.tmp" "$out/timens"
fi

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$out/etc/passwd.tmp"
mv -f "$out/etc/passwd.tmp" "$out/etc/passwd"
printf 'root:x:0:\n' >"$out/etc/group.tmp"
mv -f "$out/etc/group.tmp" "$out/etc/group"
