// Probe prints what the JVM decided about the machine it runs on, one
// key=value line each. test/e2e compiles it on the host with the JDK's own
// compiler module and runs it in a limited container, once with the JVM's
// container support (the default: it reads the cgroup files itself) and
// once with -XX:-UseContainerSupport (then it asks the kernel:
// sched_getaffinity(2) for the CPU count, sysconf(_SC_PHYS_PAGES), which
// glibc answers with sysinfo(2), for the memory it sizes the heap from).
public class Probe {
    public static void main(String[] args) {
        Runtime rt = Runtime.getRuntime();
        System.out.println("java_version=" + System.getProperty("java.version"));
        System.out.println("available_processors=" + rt.availableProcessors());
        System.out.println("max_memory=" + rt.maxMemory());
        java.lang.management.OperatingSystemMXBean os =
            java.lang.management.ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean) {
            com.sun.management.OperatingSystemMXBean sun = (com.sun.management.OperatingSystemMXBean) os;
            System.out.println("total_memory_size=" + sun.getTotalMemorySize());
        }
    }
}
