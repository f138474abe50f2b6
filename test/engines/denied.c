//go:build ignore

// (The line above keeps the go command from treating this directory as a
// cgo package: the tests build this file with musl-gcc, see buildImage.)

/*
 * denied: calls add_key(2), which the default seccomp profiles of docker,
 * containerd (ctr --seccomp) and podman do not allow (the kernel keyring is
 * not namespaced), and prints what came back:
 *
 *   denied_syscall=add_key
 *   denied_ret=<return value>
 *   denied_errno=<errno, 0 on success>
 *
 * Without a seccomp filter the call succeeds (it adds a "user" key to the
 * process keyring, which goes away with the process). Under docker's and
 * containerd's profiles it fails with EPERM, under podman's with ENOSYS:
 * each profile's default errno. The raw syscall bypasses libc; built static
 * with musl-gcc, which has no <linux/keyctl.h>, hence the constant below.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/* <linux/keyctl.h>: the calling process's own keyring. */
#define KEY_SPEC_PROCESS_KEYRING (-2)

int main(void)
{
	static const char payload[] = "x";
	long ret;

	errno = 0;
	ret = syscall(SYS_add_key, "user", "seccompagent-engines-test", payload,
		      sizeof(payload) - 1, KEY_SPEC_PROCESS_KEYRING);
	printf("denied_syscall=add_key\n");
	printf("denied_ret=%ld\n", ret);
	printf("denied_errno=%d\n", ret < 0 ? errno : 0);
	return 0;
}
