#!/bin/sh
# Build the minimal end-to-end test rootfs into OUTDIR (idempotent).
#
#   test/rootfs/build.sh OUTDIR
#
# OUTDIR gets: /bin/busybox (Debian's static busybox) with applet symlinks,
# /probe (test/probe/probe.c built static with musl-gcc), /glibc-probe (the
# same source built static with gcc: glibc reads sysfs for its CPU count and
# asks sysinfo for memory), /dstate, /hammer, /storm, /affinity, /affinity32
# and /compat32 (x86_64 and i386), /timens (test/probe/*.c), empty mount points (/proc /sys
# /dev /tmp) and an /etc/passwd with root. Needs the Debian packages
# busybox-static, musl-tools, gcc and gcc-multilib (`make deps` installs them).
set -eu

if [ $# -ne 1 ] || [ -z "$1" ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)

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

# build_static CC OUT SRC [FLAGS...]: one static test program, rebuilt only
# when its source is newer than the binary.
build_static() {
	cc=$1 dst=$out/$2 src=$here/../probe/$3
	shift 3
	[ -f "$src" ] || die "source $src not found"
	if [ ! -x "$dst" ] || [ "$src" -nt "$dst" ]; then
		$cc -static -O2 -Wall "$@" -o "$dst.tmp" "$src" ||
			die "$cc failed to build $src (make deps installs musl-tools, gcc and gcc-multilib)"
		mv -f "$dst.tmp" "$dst"
	fi
}

# probe: what a libc-using program learns (musl: sysconf asks the trapped
# syscalls); glibc-probe: the same source with glibc, which reads sysfs for
# its CPU count (the LXCFS pairing tests compare it too).
build_static musl-gcc probe probe.c
build_static gcc glibc-probe probe.c
# dstate: one thread in state D for N seconds, the load-average tests' load.
build_static musl-gcc dstate dstate.c
# hammer: the restart tests' tight loop.
build_static musl-gcc hammer hammer.c
# affinity: sched_getaffinity with pid != 0, once for x86_64 (musl) and once
# for i386 (gcc -m32, glibc static: the multilib C library), so both
# syscall entry points are trapped.
build_static musl-gcc affinity affinity.c
build_static gcc affinity32 affinity.c -m32 -pthread
# compat32: the notify kernel tier's i386 caller (notify/testdata/compat.c),
# run under `seccompagent exec`.
build_static gcc compat32 ../../notify/testdata/compat.c -m32
# timens: sysinfo uptime in a time namespace.
build_static musl-gcc timens timens.c

# storm: the signal-storm test's caller.
build_static musl-gcc storm storm.c

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$out/etc/passwd.tmp"
mv -f "$out/etc/passwd.tmp" "$out/etc/passwd"
printf 'root:x:0:\n' >"$out/etc/group.tmp"
mv -f "$out/etc/group.tmp" "$out/etc/group"
