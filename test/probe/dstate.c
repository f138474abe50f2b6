/*
 * dstate SECONDS: keeps one thread in uninterruptible sleep (state D) for
 * SECONDS without using the CPU, so a test can give a container a load
 * average of 1 without loading the machine.
 *
 * The thread is the parent of a CLONE_VFORK child: the kernel parks the
 * parent in wait_for_vfork_done() (TASK_KILLABLE, which /proc shows as D
 * and calc_load counts like any uninterruptible task, kernel/sched/core.c
 * task_contributes_to_load) until the child exits. The child shares the
 * parent's memory, so it runs on its own stack and makes raw syscalls only.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char stack[64 * 1024];

static int child(void *arg)
{
	struct timespec ts = {.tv_sec = *(int *)arg};

	syscall(SYS_nanosleep, &ts, NULL);
	syscall(SYS_exit, 0);
	return 0;
}

int main(int argc, char **argv)
{
	int secs;
	pid_t pid;

	if (argc != 2 || (secs = atoi(argv[1])) <= 0) {
		fprintf(stderr, "usage: dstate SECONDS\n");
		return 2;
	}
	pid = clone(child, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &secs);
	if (pid < 0) {
		perror("clone");
		return 1;
	}
	if (waitpid(pid, NULL, 0) < 0) {
		perror("waitpid");
		return 1;
	}
	return 0;
}
