#!/bin/sh
# /init of the cgroup v2 test VM (test/vm, run by TestCgroupV2VM).
#
# Stage 1 runs from the initramfs. runc and crun pivot_root into the
# container's rootfs, which the kernel refuses while / is the initial
# ramfs, so stage 1 copies everything into a fresh tmpfs and switch_roots
# into it. Stage 2 mounts the kernel filesystems and a pure cgroup v2
# hierarchy, loads the 9p modules, mounts the host's results directory,
# mounts the host's /usr (read-only) at /host/usr, runs the e2e test
# binary with the settings the host wrote to /results/vm.env and
# /results/groups, leaves the output and exit statuses (and the consumer
# matrix's document, when that test ran) there and powers off.
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

mount -t proc proc /proc || fatal "mount /proc"
say "stage 2 at uptime $(cut -d' ' -f1 /proc/uptime)"
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

modprobe -a virtio_pci 9pnet_virtio 9p overlay fuse || say "modprobe failed"
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /results 2>/dev/null; do
	i=$((i + 1))
	[ $i -lt 50 ] || fatal "cannot mount the 9p results share"
	sleep 0.1
done
[ -f /results/vm.env ] || fatal "/results/vm.env missing"
# The host's /usr, read-only, for the consumer matrix (its containers run
# the host's python3, node and java from it), in an image built for it:
# cache=loose lets the guest keep what it read (the share never changes
# under it).
if [ -d /host/usr ]; then
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostusr /host/usr ||
		say "cannot mount the host's /usr (9p tag hostusr): the consumer matrix will not find its programs"
fi
. /results/vm.env

{
	echo "kernel=$(uname -r)"
	echo "stage2_uptime=$(cut -d' ' -f1 /proc/uptime)"
	echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
	echo "subtree_control=$(cat /sys/fs/cgroup/cgroup.subtree_control)"
	echo "cpus=$(nproc)"
} >/results/vm-info

# The tests write to the VM's tmpfs, and only the final files cross the 9p
# share: a few large writes instead of thousands of small ones (a virtio
# request lost under TCG would block a writer forever, and with it the
# test binary's own timeout report).
out=/tmp/vm-results
mkdir -p "$out" || fatal "mkdir $out"

# A heartbeat on the console with the test each group is running: when the
# host kills a stuck VM, the log shows whether the guest was still alive
# and where the tests were.
(
	while sleep 15; do
		progress=
		for f in "$out"/e2e-*.out; do
			[ -f "$f" ] && progress="$progress [$(basename "$f" .out): $(grep '^=== RUN' "$f" | tail -n 1 | cut -c 11-)]"
		done
		say "alive, uptime $(cut -d' ' -f1 /proc/uptime)$progress"
	done
) &
heartbeat=$!

# A single command instead of the tests (VM_COMMAND, from RunCommand: `make
# bench` runs its VM part so): its stdout is command.out, its stderr goes
# to the console, its exit status is exit-code; files it leaves in
# $VM_RESULTS are copied to the share with them.
if [ -n "${VM_COMMAND:-}" ]; then
	cd /tmp || fatal "cd /tmp"
	say "command: $VM_COMMAND"
	env -i PATH="$PATH" HOME=/root TMPDIR=/tmp VM_RESULTS="$out" sh -c "$VM_COMMAND" >"$out/command.out"
	rc=$?
	kill $heartbeat
	say "command: exit status $rc"
	cp "$out"/* /results/ || say "copying the results to the 9p share failed"
	echo "tests_done_uptime=$(cut -d' ' -f1 /proc/uptime)" >>/results/vm-info
	echo "$rc" >/results/exit-code
	sync
	umount /results
	echo "@@@ seccompagent-vm exit=$rc"
	poweroff -f
	exit 0
fi

# The notify package's kernel tier first, on its own (it measures the
# kernel's own answers in the same run, and must not compete with the e2e
# groups for the emulated CPUs): always, whatever groups the host chose,
# because it covers kernel features the host may lack (i386 callers).
# Output and exit status in notify.out and exit-notify.
cd /tmp || fatal "cd /tmp"
say "notify kernel tests: -test.run '$VM_NOTIFY_RUN'"
env -i PATH="$PATH" HOME=/root TMPDIR=/tmp CI="$VM_CI" \
	SECCOMPAGENT_NOTIFY_I386_PROGRAM=/opt/seccompagent/bin/compat-i386 \
	/opt/seccompagent/bin/notify.test -test.v -test.count=1 -test.timeout="$VM_TEST_TIMEOUT" \
	-test.run="$VM_NOTIFY_RUN" >"$out/notify.out" 2>&1
echo $? >"$out/exit-notify"
say "notify kernel tests: exit status $(cat "$out/exit-notify")"

# One e2e test process: run_group N REGEXP, output and exit status in
# e2e-N.out and exit-N.
run_group() {
	say "e2e group $1: -test.run '$2' -test.skip '$VM_TEST_SKIP'"
	env -i PATH="$PATH" HOME=/root TMPDIR=/tmp CI="$VM_CI" \
		SECCOMPAGENT_E2E_AGENT=/opt/seccompagent/bin/seccompagent \
		SECCOMPAGENT_E2E_WRAPPER=/opt/seccompagent/bin/seccompagent-runtime \
		SECCOMPAGENT_E2E_ROOTFS=/opt/seccompagent/rootfs \
		SECCOMPAGENT_E2E_SLACK=3s \
		SECCOMPAGENT_E2E_CONSUMER_ROOTFS=/opt/seccompagent/consumers-rootfs \
		SECCOMPAGENT_E2E_HOST_ROOT=/host \
		SECCOMPAGENT_CONSUMERS_MD="$out/consumers.md" \
		/opt/seccompagent/bin/e2e.test -test.v -test.count=1 -test.timeout="$VM_TEST_TIMEOUT" \
		-test.run="$2" -test.skip="$VM_TEST_SKIP" >"$out/e2e-$1.out" 2>&1
	echo $? >"$out/exit-$1"
}

# Every line of /results/groups is a -test.run regexp: one e2e test
# process each, all at once (most of their time is spent waiting). Then,
# once they are all done, the lines of /results/groups-after (if any), all
# at once: groups that keep the emulated CPUs busy (the consumer matrix's
# JVMs) and would disturb the timing checks of the first wave.
[ -f /results/groups ] || fatal "/results/groups missing"
# An empty child keeps the test containers' parent cgroup from being
# removed by one test process while another creates a container in it.
mkdir -p "/sys/fs/cgroup$VM_CGROUP_PARENT/vm-keep" || fatal "mkdir $VM_CGROUP_PARENT/vm-keep"
n=0
for wave in /results/groups /results/groups-after; do
	[ -f "$wave" ] || continue
	groups=
	while IFS= read -r re; do
		[ -n "$re" ] || continue
		n=$((n + 1))
		run_group "$n" "$re" &
		groups="$groups $!"
	done <"$wave"
	# A bare `wait` would wait for the heartbeat too: only the groups'.
	# shellcheck disable=SC2086
	[ -z "$groups" ] || wait $groups
done
kill $heartbeat
rc=$(cat "$out/exit-notify")
i=1
while [ $i -le $n ]; do
	c=$(cat "$out/exit-$i" 2>/dev/null || echo 126)
	say "e2e group $i: exit status $c"
	[ "$c" = 0 ] || rc=$c
	i=$((i + 1))
done
cp "$out"/* /results/ || say "copying the results to the 9p share failed"
echo "tests_done_uptime=$(cut -d' ' -f1 /proc/uptime)" >>/results/vm-info
echo "$rc" >/results/exit-code
sync
umount /results
echo "@@@ seccompagent-vm exit=$rc"
poweroff -f
