/*
 * timens: sysinfo(2)'s uptime in a time namespace with a boottime offset,
 * next to the kernel's own clock (clock_gettime(CLOCK_BOOTTIME) is answered
 * by the vDSO in the caller's time namespace and never trapped).
 *
 *   timens OFFSET_SECONDS
 *
 * Lines (key=value), each group from one process:
 *   before_*   this process, before unshare
 *   after_*    this process after unshare(CLONE_NEWTIME) with the offset
 *              written: its own clock is still the container's, only its
 *              children's namespace has the offset
 *   child_*    a child, in the new namespace
 *   fresh_*    a grandchild, forked in that namespace, whose first call
 *              comes after its own unshare(CLONE_NEWTIME): its namespace's
 *              offset is shown in no timens_offsets any more
 *   nested_*   the child after the same unshare: the same namespace, whose
 *              offset the child's earlier call showed
 * *_uptime is sysinfo's, *_boottime_ns the clock's; *_errno is non-zero
 * when a call failed. Needs CAP_SYS_ADMIN (unshare) and CAP_SYS_TIME
 * (writing /proc/self/timens_offsets), and Linux >= 5.6.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static void report(const char *name)
{
	struct sysinfo si;
	struct timespec ts;
	long ret;

	memset(&si, 0, sizeof(si));
	errno = 0;
	ret = syscall(SYS_sysinfo, &si);
	printf("%s_sysinfo_errno=%d\n", name, ret < 0 ? errno : 0);
	printf("%s_uptime=%ld\n", name, (long)si.uptime);
	clock_gettime(CLOCK_BOOTTIME, &ts);
	printf("%s_boottime_ns=%lld\n", name, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	char line[64];
	int fd, n, status;
	pid_t pid;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OFFSET_SECONDS\n", argv[0]);
		return 2;
	}
	report("before");
	if (unshare(CLONE_NEWTIME)) {
		printf("unshare_errno=%d\n", errno);
		return 1;
	}
	n = snprintf(line, sizeof(line), "boottime %s 0\n", argv[1]);
	fd = open("/proc/self/timens_offsets", O_WRONLY);
	if (fd < 0 || write(fd, line, n) != n) {
		printf("offsets_errno=%d\n", errno);
		return 1;
	}
	close(fd);
	report("after");
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		printf("fork_errno=%d\n", errno);
		return 1;
	}
	if (pid == 0) {
		report("child");
		pid_t g = fork();
		if (g < 0) {
			printf("grandchild_fork_errno=%d\n", errno);
			fflush(stdout);
			_exit(1);
		}
		if (g == 0) {
			if (unshare(CLONE_NEWTIME)) {
				printf("fresh_unshare_errno=%d\n", errno);
				fflush(stdout);
				_exit(1);
			}
			report("fresh");
			_exit(0);
		}
		if (waitpid(g, &status, 0) != g || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			printf("grandchild_status=%d\n", status);
			fflush(stdout);
			_exit(1);
		}
		if (unshare(CLONE_NEWTIME)) {
			printf("nested_unshare_errno=%d\n", errno);
			fflush(stdout);
			_exit(1);
		}
		report("nested");
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("child_status=%d\n", status);
		return 1;
	}
	printf("done=1\n");
	return 0;
}
