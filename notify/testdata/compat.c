/*
 * Built with `gcc -m32 -static` by the kernel tier: an i386 caller of the
 * trapped syscalls, so the compat numbers (sysinfo is 116) and struct
 * compat_sysinfo travel through the real kernel. The Go test child installs
 * the filter and execs this program, which inherits it.
 *
 * Prints one line per call: name ret errno hex-bytes.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void dump(const char *name, long ret, const unsigned char *b, int n)
{
	int e = ret < 0 ? errno : 0;
	printf("%s %ld %d ", name, ret, e);
	for (int i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf("\n");
}

int main(void)
{
	unsigned char buf[256];
	long r;

	memset(buf, 0xee, sizeof(buf));
	r = syscall(SYS_sysinfo, buf);
	dump("sysinfo", r, buf, 64);

	r = syscall(SYS_sysinfo, (void *)0);
	dump("sysinfo_null", r, buf, 0);

	memset(buf, 0xee, sizeof(buf));
	r = syscall(SYS_sched_getaffinity, 0, 4, buf);
	dump("aff_4", r, buf, 8);

	memset(buf, 0xee, sizeof(buf));
	r = syscall(SYS_sched_getaffinity, 0, 6, buf);
	dump("aff_6", r, buf, 0);

	memset(buf, 0xee, sizeof(buf));
	r = syscall(SYS_sched_getaffinity, 0, 128, buf);
	dump("aff_128", r, buf, 128);
	return 0;
}
