/*
 * affinity: sched_getaffinity(2) with pid != 0, the way glibc's
 * pthread_getaffinity_np (a thread id), OpenMP and thread pools (getpid())
 * call it. One group of "CASE_ret=", "CASE_errno=" and "CASE_count=" lines
 * per case:
 *
 *   self   pid 0
 *   tid    gettid()
 *   tgid   getpid()
 *   thread the tid of another thread of this process
 *   parent getppid()
 *   other  argv[1]: a pid this pid namespace does not have (the test passes
 *          another container's host pid); the kernel says ESRCH
 *
 * count is the number of CPUs in the bytes the kernel reported writing.
 * Built twice by test/rootfs/build.sh: /affinity (x86_64, static musl) and
 * /affinity32 (i386, gcc -m32 -static), so both the native and the compat
 * entry point are trapped. Raw syscall(2), so libc adds nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long pid)
{
	unsigned char buf[128];
	long ret;
	int err, count = 0;

	memset(buf, 0, sizeof(buf));
	errno = 0;
	ret = syscall(SYS_sched_getaffinity, pid, sizeof(buf), buf);
	err = ret < 0 ? errno : 0;
	for (long i = 0; ret > 0 && i < ret * 8; i++)
		if (buf[i / 8] & (1u << (i % 8)))
			count++;
	printf("%s_pid=%ld\n%s_ret=%ld\n%s_errno=%d\n%s_count=%d\n",
	       name, pid, name, ret, name, err, name, count);
}

static int to_main[2], to_thread[2];

static void *thread(void *arg)
{
	long tid = syscall(SYS_gettid);
	char c;

	(void)arg;
	if (write(to_main[1], &tid, sizeof(tid)) != sizeof(tid))
		return NULL;
	/* Stay alive until main has asked about this thread. */
	if (read(to_thread[0], &c, 1) < 0)
		return NULL;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th;
	long tid = 0;
	char c = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s OTHER_PID\n", argv[0]);
		return 2;
	}
	if (pipe(to_main) || pipe(to_thread) || pthread_create(&th, NULL, thread, NULL)) {
		perror("affinity: thread");
		return 1;
	}
	if (read(to_main[0], &tid, sizeof(tid)) != sizeof(tid)) {
		perror("affinity: read tid");
		return 1;
	}
	report("self", 0);
	report("tid", syscall(SYS_gettid));
	report("tgid", getpid());
	report("thread", tid);
	report("parent", getppid());
	report("other", atol(argv[1]));
	if (write(to_thread[1], &c, 1) != 1)
		return 1;
	pthread_join(th, NULL);
	fflush(stdout);
	return 0;
}
