/*
 * threads: THREADS threads make CALLS raw sysinfo(2) calls each, all at
 * once; exits 1 if any call failed. The receivers test runs it trapped
 * (exec'd by the re-executed test child, whose filter survives execve).
 */
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#define THREADS 6
#define CALLS 20

static pthread_barrier_t start;
static volatile int failed;

static void *worker(void *arg)
{
	struct sysinfo si;
	(void)arg;
	pthread_barrier_wait(&start);
	for (int i = 0; i < CALLS; i++)
		if (syscall(SYS_sysinfo, &si) != 0)
			failed = 1;
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	pthread_barrier_init(&start, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&t[i], NULL, worker, NULL) != 0)
			return 2;
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	printf("calls=%d failed=%d\n", THREADS * CALLS, failed);
	return failed;
}
