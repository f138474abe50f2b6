/*
 * hammer: calls sysinfo(2) and sched_getaffinity(2) in a loop for a while
 * and counts what a restart of the agent must never cause:
 *
 *   hammer SECONDS TOTALRAM CPUS [PAUSE_US]
 *
 * Every answer is classified: ENOSYS, any other error, or a value that is
 * not the container's (totalram != TOTALRAM or a mask with != CPUS CPUs,
 * i.e. the host's numbers). The slowest call is reported too, so a test can
 * bound the restart gap. One line is printed at the end:
 *
 *   calls=N enosys=N errors=N host=N maxlat_us=N last_errno=N
 *
 * Static musl (test/rootfs/build.sh), raw syscalls: no libc caching.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long calls, enosys, errors, host, maxlat;
static int last_errno;

/* account classifies one call that took t0..t1: failed (ret < 0, errno
 * set), or answered with the container's numbers (ok) or not. */
static void account(long ret, long long t0, long long t1, int ok)
{
	calls++;
	if (t1 - t0 > maxlat)
		maxlat = t1 - t0;
	if (ret < 0) {
		last_errno = errno;
		if (errno == ENOSYS)
			enosys++;
		else
			errors++;
	} else if (!ok) {
		host++;
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: hammer SECONDS TOTALRAM CPUS [PAUSE_US]\n");
		return 2;
	}
	long long end = now_us() + atoll(argv[1]) * 1000000LL;
	unsigned long want_ram = strtoul(argv[2], NULL, 10);
	int want_cpus = atoi(argv[3]);
	long pause_us = argc > 4 ? atol(argv[4]) : 0;

	while (now_us() < end) {
		struct sysinfo si;
		unsigned char mask[128];
		long long t0 = now_us();
		long ret = syscall(SYS_sysinfo, &si);
		account(ret, t0, now_us(), ret == 0 && (unsigned long)si.totalram * si.mem_unit == want_ram);

		t0 = now_us();
		ret = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
		long long t1 = now_us();
		int n = 0;
		for (long i = 0; i < ret; i++)
			n += __builtin_popcount(mask[i]);
		account(ret, t0, t1, n == want_cpus);
		if (pause_us > 0)
			usleep(pause_us);
	}
	printf("calls=%lld enosys=%lld errors=%lld host=%lld maxlat_us=%lld last_errno=%d\n",
	       calls, enosys, errors, host, maxlat, last_errno);
	return 0;
}
