/*
 * storm: calls sysinfo(2) in a loop while SIGALRM arrives every 100 µs, and
 * detects answers written into memory after the call had returned.
 *
 *   storm SECONDS TOTALRAM
 *
 * The handler is installed without SA_RESTART (as CPython installs its
 * handlers), so a signal that interrupts a trapped call makes it return
 * EINTR. The calls go round NBUF buffers; after each call its buffer is
 * refilled with a canary, and checked when its turn comes again NBUF calls
 * later (and once more at the end, after a pause): any other byte there is a
 * write that landed after its call had returned. One line at the end:
 *
 *   calls=N ok=N eintr=N other=N late=N host=N alarms=N
 *
 * host counts successful answers whose totalram*mem_unit is not TOTALRAM.
 * Static musl (test/rootfs/build.sh), raw syscalls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define NBUF 64
#define SIZE 112 /* struct sysinfo as the x86_64 kernel writes it */
#define CANARY 0x5a

static unsigned char bufs[NBUF][512];
static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int tainted(const unsigned char *b)
{
	for (int j = 0; j < SIZE; j++)
		if (b[j] != CANARY)
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: storm SECONDS TOTALRAM\n");
		return 2;
	}
	long long end = now_us() + atoll(argv[1]) * 1000000LL;
	unsigned long long want = strtoull(argv[2], NULL, 10);
	long long calls = 0, ok = 0, eintr = 0, other = 0, late = 0, host = 0;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) != 0) {
		perror("sigaction");
		return 1;
	}
	memset(bufs, CANARY, sizeof(bufs));
	struct itimerval it = {{0, 100}, {0, 100}};
	if (setitimer(ITIMER_REAL, &it, NULL) != 0) {
		perror("setitimer");
		return 1;
	}
	for (int i = 0; now_us() < end; i = (i + 1) % NBUF) {
		unsigned char *b = bufs[i];
		if (tainted(b))
			late++;
		long r = syscall(SYS_sysinfo, b);
		int e = errno;
		calls++;
		if (r == 0) {
			unsigned long long total;
			unsigned int unit;
			ok++;
			memcpy(&total, b + 32, 8);
			memcpy(&unit, b + 104, 4);
			if (total * (unit ? unit : 1) != want)
				host++;
		} else if (e == EINTR) {
			eintr++;
		} else {
			other++;
		}
		memset(b, CANARY, SIZE);
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	/* Late writes into the last buffers land within this pause. */
	struct timespec pause = {0, 200 * 1000 * 1000};
	while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
		;
	for (int i = 0; i < NBUF; i++)
		if (tainted(bufs[i]))
			late++;
	printf("calls=%lld ok=%lld eintr=%lld other=%lld late=%lld host=%lld alarms=%d\n",
	       calls, ok, eintr, other, late, host, (int)alarms);
	return 0;
}
