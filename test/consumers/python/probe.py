# What Python decided about the machine it runs on, one key=value line
# each. test/e2e runs it with the host's python3 (-I) in a limited
# container.
import os, sys
print("python_version=" + sys.version.split()[0])
print("sched_getaffinity=%d" % len(os.sched_getaffinity(0)))
print("cpu_count=%d" % os.cpu_count())
print("phys_bytes=%d" % (os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")))
