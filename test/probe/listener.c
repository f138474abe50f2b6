/*
 * listener: a container's worth of seccomp listener without a container,
 * for measuring the agent at scale (hundreds or thousands attached).
 *
 *   listener SOCKET PERIOD_MS
 *
 * Installs a notify filter for sysinfo(2) on itself (raw BPF, no
 * libseccomp), hands the listener fd to the agent at SOCKET exactly as runc
 * does (one ContainerProcessState JSON, the fd in SCM_RIGHTS), then calls
 * sysinfo every PERIOD_MS until SIGTERM, and prints
 *
 *   calls=N enosys=N errors=N maxlat_us=N
 *
 * Build: gcc -O2 -static (test/e2e builds it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: listener SOCKET PERIOD_MS\n");
		return 2;
	}
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sysinfo, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("no_new_privs");
		return 1;
	}
	int nfd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (nfd < 0) {
		perror("seccomp");
		return 1;
	}
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strncpy(addr.sun_path, argv[1], sizeof(addr.sun_path) - 1);
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		perror("connect");
		return 1;
	}
	char state[512];
	int pid = getpid();
	int n = snprintf(state, sizeof(state),
			 "{\"ociVersion\":\"1.0.2\",\"fds\":[\"seccompFd\"],\"pid\":%d,\"metadata\":\"\","
			 "\"state\":{\"ociVersion\":\"1.0.2\",\"id\":\"listener-%d\",\"status\":\"running\","
			 "\"pid\":%d,\"bundle\":\"/\"}}",
			 pid, pid, pid);
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = state, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &nfd, sizeof(int));
	if (sendmsg(s, &msg, 0) != n) {
		perror("sendmsg");
		return 1;
	}
	close(s);
	close(nfd);

	struct sigaction sa = {.sa_handler = on_term, .sa_flags = SA_RESTART};
	sigaction(SIGTERM, &sa, NULL);
	long period = atol(argv[2]);
	long long calls = 0, enosys = 0, errors = 0, maxlat = 0;
	printf("attached\n");
	fflush(stdout);
	while (!stop) {
		struct sysinfo si;
		long long t0 = now_us();
		long r = syscall(SYS_sysinfo, &si);
		long long d = now_us() - t0;
		if (stop)
			break;
		calls++;
		if (d > maxlat)
			maxlat = d;
		if (r < 0) {
			if (errno == ENOSYS)
				enosys++;
			else if (errno != EINTR)
				errors++;
		}
		if (period > 0)
			usleep(period * 1000);
	}
	printf("calls=%lld enosys=%lld errors=%lld maxlat_us=%lld\n", calls, enosys, errors, maxlat);
	return 0;
}
