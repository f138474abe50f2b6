/*
 * callbench: the caller side of `make bench`, run inside a container (built
 * static with musl-gcc). It makes raw sysinfo(2) / sched_getaffinity(2)
 * calls, so what it times is the kernel round trip plus whatever answers
 * the trapped call, never libc. Every result is one "key=value" line; the
 * window modes print one "w ..." line per window and run until killed.
 *
 *   callbench tight   SYSCALL N           N calls back to back: median/mean/p99
 *   callbench threads SYSCALL T MS        T threads calling for MS ms: calls/s
 *   callbench sparse  SYSCALL K GAP_MS    K calls GAP_MS apart: mean/median/max
 *   callbench windows SYSCALL GAP_US WIN_MS
 *                                         a call every GAP_US (0: back to back),
 *                                         "w <start_ns> <end_ns> <calls> <max_ns>
 *                                         <sum_ns>" every WIN_MS, forever
 *   callbench meminfo N                   N open/read/close of /proc/meminfo
 *
 * SYSCALL is "sysinfo" or "affinity". Times are CLOCK_MONOTONIC, which the
 * container shares with the host (no time namespace), so the driver can
 * line windows up with what it did meanwhile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

static int use_affinity;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "callbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* one trapped call; exits on a failure, which the agent must never cause */
static void call(void)
{
	long r;
	if (use_affinity) {
		unsigned char mask[128];
		r = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
	} else {
		struct sysinfo si;
		r = syscall(SYS_sysinfo, &si);
	}
	if (r < 0)
		die(use_affinity ? "sched_getaffinity" : "sysinfo");
}

static uint64_t timed_call(void)
{
	uint64_t t0 = now_ns();
	call();
	return now_ns() - t0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *prefix, uint64_t *lat, long n)
{
	uint64_t sum = 0;
	for (long i = 0; i < n; i++)
		sum += lat[i];
	qsort(lat, n, sizeof(*lat), cmp_u64);
	printf("%s_n=%ld\n", prefix, n);
	printf("%s_median_ns=%llu\n", prefix, (unsigned long long)lat[n / 2]);
	printf("%s_mean_ns=%llu\n", prefix, (unsigned long long)(sum / n));
	printf("%s_p99_ns=%llu\n", prefix, (unsigned long long)lat[n * 99 / 100]);
	printf("%s_max_ns=%llu\n", prefix, (unsigned long long)lat[n - 1]);
}

static long arg_long(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == 0 || *end != 0 || v < 0) {
		fprintf(stderr, "callbench: bad number %s\n", s);
		exit(2);
	}
	return v;
}

static uint64_t *alloc_lat(long n)
{
	uint64_t *lat = calloc(n ? n : 1, sizeof(*lat));
	if (!lat)
		die("calloc");
	return lat;
}

static int tight(long n)
{
	uint64_t *lat = alloc_lat(n);
	for (long i = 0; i < n / 10 + 100; i++) /* warm up: caches, first-call work */
		call();
	for (long i = 0; i < n; i++)
		lat[i] = timed_call();
	report("tight", lat, n);
	return 0;
}

static volatile int go_flag;
static uint64_t deadline;
static pthread_barrier_t barrier;

static void *worker(void *p)
{
	long *count = p;
	pthread_barrier_wait(&barrier);
	while (!go_flag)
		;
	while (now_ns() < deadline) {
		call();
		(*count)++;
	}
	return NULL;
}

static int threads(long t, long ms)
{
	pthread_t *tids = calloc(t, sizeof(*tids));
	long *counts = calloc(t, sizeof(*counts) * 16); /* one cache line each */
	if (!tids || !counts)
		die("calloc");
	pthread_barrier_init(&barrier, NULL, t + 1);
	for (long i = 0; i < t; i++)
		if (pthread_create(&tids[i], NULL, worker, &counts[i * 16]) != 0)
			die("pthread_create");
	pthread_barrier_wait(&barrier);
	uint64_t start = now_ns();
	deadline = start + (uint64_t)ms * 1000000ull;
	go_flag = 1;
	long total = 0;
	for (long i = 0; i < t; i++) {
		pthread_join(tids[i], NULL);
		total += counts[i * 16];
	}
	double secs = (now_ns() - start) / 1e9;
	printf("threads=%ld\n", t);
	printf("threads_calls=%ld\n", total);
	printf("threads_calls_per_s=%.0f\n", total / secs);
	return 0;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000ull, .tv_nsec = ns % 1000000000ull};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int sparse(long k, long gap_ms)
{
	uint64_t *lat = alloc_lat(k);
	call(); /* the first call of a process is not what this measures */
	for (long i = 0; i < k; i++) {
		sleep_ns((uint64_t)gap_ms * 1000000ull);
		lat[i] = timed_call();
	}
	report("sparse", lat, k);
	return 0;
}

static __attribute__((noreturn)) void windows(long gap_us, long win_ms)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	uint64_t win = (uint64_t)win_ms * 1000000ull;
	for (;;) {
		uint64_t start = now_ns(), end = start + win, max = 0, sum = 0, t;
		long calls = 0;
		while ((t = now_ns()) < end) {
			uint64_t d = timed_call();
			calls++;
			sum += d;
			if (d > max)
				max = d;
			if (gap_us)
				sleep_ns((uint64_t)gap_us * 1000ull);
		}
		printf("w %llu %llu %ld %llu %llu\n", (unsigned long long)start, (unsigned long long)t, calls,
		       (unsigned long long)max, (unsigned long long)sum);
	}
}

static int meminfo(long n)
{
	static char buf[16384];
	uint64_t *lat = alloc_lat(n);
	for (long i = -n / 10 - 10; i < n; i++) {
		uint64_t t0 = now_ns();
		int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die("open /proc/meminfo");
		ssize_t r;
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			;
		if (r < 0)
			die("read /proc/meminfo");
		close(fd);
		if (i >= 0)
			lat[i] = now_ns() - t0;
	}
	report("meminfo", lat, n);
	/* which view it was: the driver checks LXCFS really answered */
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	ssize_t r = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (r > 0) {
		buf[r] = 0;
		unsigned long long total = 0;
		if (sscanf(buf, "MemTotal: %llu kB", &total) == 1)
			printf("meminfo_total_kb=%llu\n", total);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		goto usage;
	if (strcmp(argv[1], "meminfo") == 0)
		return meminfo(arg_long(argv[2]));
	if (strcmp(argv[2], "affinity") == 0)
		use_affinity = 1;
	else if (strcmp(argv[2], "sysinfo") != 0)
		goto usage;
	if (strcmp(argv[1], "tight") == 0 && argc == 4)
		return tight(arg_long(argv[3]));
	if (strcmp(argv[1], "threads") == 0 && argc == 5)
		return threads(arg_long(argv[3]), arg_long(argv[4]));
	if (strcmp(argv[1], "sparse") == 0 && argc == 5)
		return sparse(arg_long(argv[3]), arg_long(argv[4]));
	if (strcmp(argv[1], "windows") == 0 && argc == 5)
		windows(arg_long(argv[3]), arg_long(argv[4]));
usage:
	fprintf(stderr, "usage: see the comment at the top of callbench.c\n");
	return 2;
}
