/*
 * listeners: many seccomp listeners for `make bench` without a runtime. It
 * forks N children; each installs a filter trapping sysinfo(2) with
 * SECCOMP_FILTER_FLAG_NEW_LISTENER, hands the listener fd to SOCKET exactly
 * as runc does (one ContainerProcessState JSON, the fd in SCM_RIGHTS, fds
 * ["seccompFd"]), closes its own copy, makes one sysinfo call (answered
 * only once the agent serves the fd), reports to the parent and sleeps.
 *
 *   listeners SOCKET N PREFIX
 *
 * The parent prints "attached=<ok> failed=<n> elapsed_ms=<t>
 * worst_first_call_ms=<t>" once every child reported, then waits for its
 * stdin to close and SIGKILLs its children (by pid) before exiting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct ack {
	int ok;
	int err;
	uint64_t first_call_ns;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int install_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sysinfo, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -1;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static int send_fd(const char *path, int fd, const char *id)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -1;
	char json[512];
	int pid = getpid();
	int n = snprintf(json, sizeof(json),
			 "{\"ociVersion\":\"1.0.2-dev\",\"fds\":[\"seccompFd\"],\"pid\":%d,\"metadata\":\"\","
			 "\"state\":{\"ociVersion\":\"1.0.2-dev\",\"id\":\"%s\",\"status\":\"creating\",\"pid\":%d,"
			 "\"bundle\":\"/\"}}",
			 pid, id, pid);
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = {.iov_base = json, .iov_len = n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	int r = sendmsg(s, &msg, MSG_NOSIGNAL) == n ? 0 : -1;
	close(s);
	return r;
}

static void child(const char *path, const char *id, int ackfd)
{
	struct ack a = {0};
	int fd = install_filter();
	if (fd < 0 || send_fd(path, fd, id) < 0) {
		a.err = errno;
	} else {
		close(fd);
		struct sysinfo si;
		uint64_t t0 = now_ns();
		if (syscall(SYS_sysinfo, &si) == 0)
			a.ok = 1;
		else
			a.err = errno;
		a.first_call_ns = now_ns() - t0;
	}
	if (write(ackfd, &a, sizeof(a)) != sizeof(a))
		_exit(1);
	close(ackfd);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: listeners SOCKET N PREFIX\n");
		return 2;
	}
	long n = strtol(argv[2], NULL, 10);
	if (n <= 0) {
		fprintf(stderr, "listeners: bad N\n");
		return 2;
	}
	pid_t *pids = calloc(n, sizeof(*pids));
	int p[2];
	if (!pids || pipe2(p, O_CLOEXEC) < 0) {
		perror("listeners");
		return 1;
	}
	uint64_t start = now_ns();
	for (long i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("listeners: fork");
			n = i;
			break;
		}
		if (pids[i] == 0) {
			close(p[0]);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			char id[128];
			snprintf(id, sizeof(id), "%s-%ld", argv[3], i);
			child(argv[1], id, p[1]);
		}
	}
	close(p[1]);
	long ok = 0, failed = 0;
	uint64_t worst = 0;
	int first_err = 0;
	for (long i = 0; i < n; i++) {
		struct ack a;
		if (read(p[0], &a, sizeof(a)) != sizeof(a)) {
			failed += n - i;
			break;
		}
		if (a.ok)
			ok++;
		else {
			failed++;
			if (!first_err)
				first_err = a.err;
		}
		if (a.first_call_ns > worst)
			worst = a.first_call_ns;
	}
	printf("attached=%ld failed=%ld elapsed_ms=%.1f worst_first_call_ms=%.1f first_error=%s\n", ok, failed,
	       (now_ns() - start) / 1e6, worst / 1e6, first_err ? strerror(first_err) : "none");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	for (long i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
	for (long i = 0; i < n; i++)
		waitpid(pids[i], NULL, 0);
	return 0;
}
