/*
 * The pod sandbox's process for the CRI test: it holds the pod's namespaces
 * and does nothing else. As the pid namespace's init (when the pod shares
 * one) it reaps orphans; SIGINT and SIGTERM end it, because an init process
 * gets no default action for signals it does not handle (kernel/signal.c:
 * sig_task_ignored, SIGNAL_UNKILLABLE), so without handlers StopPodSandbox
 * would wait for its timeout and SIGKILL.
 *
 * Built static with musl-gcc by the test (test/cri); the image holds only
 * this file.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = stop;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return 1;
	sa.sa_handler = reap;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 1;
	for (;;)
		pause();
}
