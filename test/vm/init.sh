#!/bin/sh
# /init of the cgroup v2 test VM (test/vm, run by TestCgroupV2VM).
#
# Stage 1 runs from the initramfs. runc and crun pivot_root into the
# container's rootfs, which the kernel refuses while / is the initial
# ramfs, so stage 1 copies everything into a fresh tmpfs and switch_roots
# into it. Stage 2 mounts the kernel filesystems and a pure cgroup v2
# hierarchy, loads the 9p modules, mounts the host's results directory,
# runs the e2e test binary with the settings the host wrote to
# /results/vm.env, leaves its output and exit status there and powers off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

say() { echo "vm-init: $*"; }

# Exit status reported when the VM cannot even run the tests.
fatal() {
	say "FATAL: $*"
	echo "@@@ seccompagent-vm exit=125"
	poweroff -f
	exit 1
}

if [ "${1:-}" != stage2 ]; then
	mkdir -p /newroot || fatal "mkdir /newroot"
	mount -t tmpfs -o mode=0755 newroot /newroot || fatal "mount tmpfs /newroot"
	for e in /*; do
		case "$e" in
		/newroot | /proc | /sys | /dev) continue ;;
		esac
		cp -a "$e" /newroot/ || fatal "copy $e to /newroot"
	done
	mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/results || fatal "mkdir in /newroot"
	# switch_root empties the initramfs (freeing its memory), moves
	# /newroot to / and execs this script again.
	exec switch_root /newroot /init stage2
	fatal "switch_root failed"
fi

echo "@@@ seccompagent-vm stage2 uptime=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)"
mount -t proc proc /proc || fatal "mount /proc"
mount -t sysfs sysfs /sys || fatal "mount /sys"
mount -t devtmpfs devtmpfs /dev || fatal "mount /dev"
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts || fatal "mount /dev/pts"
mount -t tmpfs -o mode=1777 shm /dev/shm || fatal "mount /dev/shm"
mkdir -p /tmp /run && chmod 1777 /tmp
mount -t tmpfs -o mode=0755 run /run || fatal "mount /run"

# A pure cgroup v2 host: the kernel runs with cgroup_no_v1=all.
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || fatal "mount cgroup2"
say "cgroup.controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
for c in cpu cpuset memory pids io; do
	if grep -qw "$c" /sys/fs/cgroup/cgroup.controllers; then
		echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable controller $c"
	else
		say "controller $c not available"
	fi
done
say "cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

modprobe -a virtio_pci 9pnet_virtio 9p overlay || say "modprobe failed"
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /results 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 50 ] || fatal "cannot mount the 9p results share"
	sleep 0.1
done
[ -f /results/vm.env ] || fatal "/results/vm.env missing"
. /results/vm.env

{
	echo "kernel=$(uname -r)"
	echo "stage2_uptime=$(cut -d' ' -f1 /proc/uptime)"
	echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
	echo "subtree_control=$(cat /sys/fs/cgroup/cgroup.subtree_control)"
	echo "cpus=$(nproc)"
} >/results/vm-info

say "running e2e tests: -test.run '$VM_TEST_RUN' -test.skip '$VM_TEST_SKIP'"
cd /tmp || fatal "cd /tmp"
env -i PATH="$PATH" HOME=/root TMPDIR=/tmp CI="$VM_CI" \
	SECCOMPAGENT_E2E_AGENT=/opt/seccompagent/bin/seccompagent \
	SECCOMPAGENT_E2E_ROOTFS=/opt/seccompagent/rootfs \
	/opt/seccompagent/bin/e2e.test -test.v -test.count=1 -test.timeout="$VM_TEST_TIMEOUT" \
	-test.run="$VM_TEST_RUN" -test.skip="$VM_TEST_SKIP" >/results/e2e.out 2>&1
rc=$?
echo "tests_done_uptime=$(cut -d' ' -f1 /proc/uptime)" >>/results/vm-info
echo "$rc" >/results/exit-code
sync
umount /results
echo "@@@ seccompagent-vm exit=$rc"
poweroff -f
