/*
 * probe: prints what a libc-using program inside a container learns about
 * its CPUs, memory and uptime, one "key=value" line per fact.
 *
 * It is built static with musl-gcc (see test/rootfs/build.sh) because musl
 * answers sysconf(_SC_NPROCESSORS_ONLN) with sched_getaffinity(2) and
 * sysconf(_SC_PHYS_PAGES) with sysinfo(2): exactly the two syscalls the
 * seccomp agent traps. The raw syscall(2) calls below bypass libc so the
 * test sees the kernel ABI (return value and errno) the agent must mimic.
 *
 * Every value is printed even when a call fails, so a test can tell
 * "wrong answer" from "call failed".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

/* Print the sysconf/get_nprocs view (what most programs actually use). */
static void print_libc_view(void)
{
	printf("nprocs_onln=%ld\n", sysconf(_SC_NPROCESSORS_ONLN));
	printf("nprocs_conf=%ld\n", sysconf(_SC_NPROCESSORS_CONF));
	printf("get_nprocs=%d\n", get_nprocs());
	printf("phys_pages=%ld\n", sysconf(_SC_PHYS_PAGES));
	printf("avphys_pages=%ld\n", sysconf(_SC_AVPHYS_PAGES));
	printf("pagesize=%ld\n", sysconf(_SC_PAGESIZE));
}

/* The first line of a /proc file, without its newline ("" if unreadable). */
static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	buf[0] = '\0';
	if (!f)
		return;
	if (!fgets(buf, len, f))
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/* Raw sysinfo(2) with a valid buffer, then with NULL (must be EFAULT).
 * /proc/uptime is read just before the call and /proc/loadavg just after,
 * so a test can compare them the way a conformance suite does (sysinfo's
 * uptime, rounded up, is never below the file's). */
static void print_sysinfo(void)
{
	struct sysinfo si;
	char proc_uptime[128], proc_loadavg[128];
	long ret;
	int err;

	memset(&si, 0, sizeof(si));
	read_line("/proc/uptime", proc_uptime, sizeof(proc_uptime));
	errno = 0;
	ret = syscall(SYS_sysinfo, &si);
	err = ret < 0 ? errno : 0;
	read_line("/proc/loadavg", proc_loadavg, sizeof(proc_loadavg));
	printf("proc_uptime=%s\n", proc_uptime);
	printf("proc_loadavg=%s\n", proc_loadavg);
	printf("sysinfo_ret=%ld\n", ret);
	printf("sysinfo_errno=%d\n", err);
	printf("uptime=%ld\n", (long)si.uptime);
	printf("totalram=%lu\n", (unsigned long)si.totalram);
	printf("freeram=%lu\n", (unsigned long)si.freeram);
	printf("sharedram=%lu\n", (unsigned long)si.sharedram);
	printf("bufferram=%lu\n", (unsigned long)si.bufferram);
	printf("totalswap=%lu\n", (unsigned long)si.totalswap);
	printf("freeswap=%lu\n", (unsigned long)si.freeswap);
	printf("procs=%u\n", (unsigned)si.procs);
	printf("mem_unit=%u\n", (unsigned)si.mem_unit);
	printf("loads=%lu %lu %lu\n", (unsigned long)si.loads[0],
	       (unsigned long)si.loads[1], (unsigned long)si.loads[2]);

	errno = 0;
	ret = syscall(SYS_sysinfo, NULL);
	printf("sysinfo_null_ret=%ld\n", ret);
	printf("sysinfo_null_errno=%d\n", ret < 0 ? errno : 0);
}

/* Raw sched_getaffinity(2): the return value is the number of mask bytes
 * the kernel wrote, so only bits within those bytes count. */
static void print_affinity(void)
{
	unsigned char buf[128];
	long ret;
	int err, count = 0, first = 1;

	memset(buf, 0, sizeof(buf));
	errno = 0;
	ret = syscall(SYS_sched_getaffinity, 0, sizeof(buf), buf);
	err = ret < 0 ? errno : 0;
	printf("affinity_ret=%ld\n", ret);
	printf("affinity_errno=%d\n", err);

	printf("affinity_mask=");
	for (long i = 0; ret > 0 && i < ret * 8; i++) {
		if (buf[i / 8] & (1u << (i % 8))) {
			printf("%s%ld", first ? "" : ",", i);
			first = 0;
			count++;
		}
	}
	printf("\n");
	printf("affinity_count=%d\n", count);

	/* 4 bytes is not a multiple of sizeof(long) on 64-bit: EINVAL. */
	errno = 0;
	ret = syscall(SYS_sched_getaffinity, 0, 4, buf);
	printf("affinity_len4_ret=%ld\n", ret);
	printf("affinity_len4_errno=%d\n", ret < 0 ? errno : 0);
}

int main(void)
{
	print_libc_view();
	print_sysinfo();
	print_affinity();
	return 0;
}
