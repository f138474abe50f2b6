/*
 * refsup: the minimal seccomp supervisor `make bench` measures the agent
 * against. It listens where the agent would (linux.seccomp.listenerPath),
 * takes each runtime's ContainerProcessState and listener fd (SCM_RIGHTS),
 * and serves that fd in a thread of its own doing only what any correct
 * supervisor must per notification:
 *
 *   RECV -> ID_VALID (so the pid still names the trapped thread)
 *        -> process_vm_writev of a precomputed answer -> SEND
 *
 * sysinfo gets a fixed struct sysinfo, sched_getaffinity min(len,
 * cpumask_size()) bytes of a mask holding CPU 0; anything else is answered
 * with FLAG_CONTINUE.
 *
 *   refsup SOCKET sync    ask for SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (6.6+)
 *                         and sleep in RECV; exits 3 if the kernel refuses
 *   refsup SOCKET plain   poll(POLLIN) then RECV, as a supervisor must on a
 *                         kernel that does not wake a blocked RECV when the
 *                         filter is orphaned
 *   MODE+counters         (sync+counters, plain+counters) sysinfo also does
 *                         the least a correct answer needs on top: it reads
 *                         the caller's memory usage and task count (one
 *                         pread each of the counter files of its cgroups,
 *                         opened at its listener's first call) before the
 *                         ID_VALID, and puts them in the answer; exits 4 if
 *                         it cannot open them
 *
 *   refsup --probe        exit 0 if the kernel has synchronous wake-up
 *
 * It runs until killed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

#define NR_SYSINFO 99            /* x86_64 */
#define NR_SCHED_GETAFFINITY 204 /* x86_64 */
#define AUDIT_ARCH_X86_64 0xc000003e

static int sync_mode, counters;
static struct sysinfo answer;
static unsigned char mask[1024];
static long mask_size;

/* the counter file of the caller's cgroup: v2 (one line "0::PATH" in
 * /proc/PID/cgroup) or the v1 hierarchy of controller ctrl; a cgroup
 * without the controller enabled (v2) is charged to the nearest ancestor
 * that has it, whose file is opened then */
static __thread char tried[8192]; /* the last path open_counter tried, for its error */

static int open_counter(pid_t pid, const char *ctrl, const char *v1, const char *v2)
{
	char path[4096], line[4096];
	int unified = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	snprintf(tried, sizeof(tried), "%s: no line for %s", path, ctrl);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	int fd = -1;
	while (fd < 0 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		char *ctrls = strchr(line, ':');
		char *cg = ctrls ? strchr(ctrls + 1, ':') : NULL;
		if (!cg)
			continue;
		*cg++ = 0;
		*ctrls++ = 0;
		const char *file = v1;
		if (unified && strcmp(line, "0") == 0 && *ctrls == 0) {
			file = v2;
			ctrl = "";
		} else if (unified || !strstr(ctrls, ctrl)) {
			continue;
		}
		for (;;) {
			snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/%s", ctrl, cg, file);
			fd = open(path, O_RDONLY | O_CLOEXEC);
			snprintf(tried, sizeof(tried), "%s: %s", path, fd < 0 ? strerror(errno) : "ok");
			char *up = strrchr(cg, '/');
			if (fd >= 0 || errno != ENOENT || !up || up == cg)
				break;
			*up = 0;
		}
	}
	fclose(f);
	return fd;
}

static unsigned long long read_counter(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	return strtoull(buf, NULL, 10);
}

static void *serve(void *p)
{
	int fd = (int)(intptr_t)p;
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;
	struct sysinfo mine = answer;
	int mem_fd = -1, pids_fd = -1;
	for (;;) {
		if (!sync_mode) {
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			if (poll(&pfd, 1, -1) < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			if (!(pfd.revents & POLLIN) && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)))
				break;
		}
		memset(&req, 0, sizeof(req));
		if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR || errno == ENOENT) {
				struct pollfd pfd = {.fd = fd, .events = POLLIN};
				if (poll(&pfd, 1, 0) == 1 && !(pfd.revents & POLLIN) && (pfd.revents & POLLHUP))
					break;
				continue;
			}
			break;
		}
		memset(&resp, 0, sizeof(resp));
		resp.id = req.id;
		resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		if (counters && req.data.arch == AUDIT_ARCH_X86_64 && req.data.nr == NR_SYSINFO) {
			if (mem_fd < 0) {
				mem_fd = open_counter(req.pid, "memory", "memory.usage_in_bytes", "memory.current");
				pids_fd = open_counter(req.pid, "pids", "pids.current", "pids.current");
				if (mem_fd < 0 || pids_fd < 0) {
					fprintf(stderr, "refsup: cannot open the counters of pid %u's cgroups (%s)\n", req.pid, tried);
					exit(4);
				}
			}
			unsigned long long used = read_counter(mem_fd);
			mine.freeram = used < mine.totalram ? mine.totalram - used : 0;
			mine.procs = (unsigned short)read_counter(pids_fd);
		}
		if (req.data.arch == AUDIT_ARCH_X86_64 &&
		    (req.data.nr == NR_SYSINFO || req.data.nr == NR_SCHED_GETAFFINITY) &&
		    ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req.id) == 0) {
			struct iovec local, remote;
			long val = 0;
			if (req.data.nr == NR_SYSINFO) {
				local.iov_base = &mine;
				local.iov_len = sizeof(mine);
			} else {
				unsigned int len = (unsigned int)req.data.args[1];
				val = len < mask_size ? len : mask_size;
				local.iov_base = mask;
				local.iov_len = val;
			}
			remote.iov_base = (void *)(uintptr_t)req.data.args[0 + (req.data.nr == NR_SCHED_GETAFFINITY) * 2];
			remote.iov_len = local.iov_len;
			if (process_vm_writev(req.pid, &local, 1, &remote, 1, 0) == (ssize_t)local.iov_len) {
				resp.flags = 0;
				resp.val = val;
			}
		}
		if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp) < 0 && errno != ENOENT)
			perror("refsup: SEND");
	}
	close(fd);
	if (mem_fd >= 0)
		close(mem_fd);
	if (pids_fd >= 0)
		close(pids_fd);
	return NULL;
}

/* receive one state message and its fd; returns the fd or -1 */
static int receive(int conn)
{
	static char buf[1 << 16];
	char cbuf[CMSG_SPACE(sizeof(int) * 8)];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	if (recvmsg(conn, &msg, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	int fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (int i = 0; i < n; i++) {
			int got;
			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fd < 0)
				fd = got;
			else
				close(got);
		}
	}
	return fd;
}

/* a child installs a do-nothing filter with a listener and asks for
 * synchronous wake-up: EINVAL before Linux 6.6 */
static int probe(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
		struct sock_fprog prog = {.len = 1, .filter = f};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			_exit(2);
		int fd = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
		if (fd < 0)
			_exit(2);
		_exit(ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) == 0 ? 0 : 1);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return 2;
	return WEXITSTATUS(st);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--probe") == 0)
		return probe();
	char *mode = argc == 3 ? argv[2] : "";
	char *plus = strchr(mode, '+');
	if (plus && strcmp(plus, "+counters") == 0) {
		counters = 1;
		*plus = 0;
	}
	if (argc != 3 || (strcmp(mode, "sync") && strcmp(mode, "plain"))) {
		fprintf(stderr, "usage: refsup SOCKET sync|plain[+counters]\n");
		return 2;
	}
	sync_mode = strcmp(mode, "sync") == 0;
	answer.uptime = 1;
	answer.totalram = 256ul << 20;
	answer.freeram = 128ul << 20;
	answer.procs = 1;
	answer.mem_unit = 1;
	mask_size = syscall(SYS_sched_getaffinity, 0, sizeof(mask), mask);
	if (mask_size <= 0) {
		perror("refsup: sched_getaffinity");
		return 1;
	}
	memset(mask, 0, sizeof(mask));
	mask[0] = 1;

	int ln = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(argv[1]) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "refsup: socket path too long\n");
		return 2;
	}
	strcpy(addr.sun_path, argv[1]);
	unlink(argv[1]);
	if (ln < 0 || bind(ln, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(ln, 128) < 0) {
		perror("refsup: listen");
		return 1;
	}
	for (;;) {
		int conn = accept4(ln, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno == EINTR)
				continue;
			perror("refsup: accept");
			return 1;
		}
		int fd = receive(conn);
		close(conn);
		if (fd < 0)
			continue; /* a readiness probe: connect and close */
		if (sync_mode && ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, 0) < 0) {
			fprintf(stderr, "refsup: SECCOMP_IOCTL_NOTIF_SET_FLAGS: %s\n", strerror(errno));
			return 3;
		}
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fd) != 0) {
			perror("refsup: pthread_create");
			return 1;
		}
		pthread_detach(t);
	}
}
