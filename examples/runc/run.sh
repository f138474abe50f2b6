#!/usr/bin/env bash
# A plain runc bundle with 256 MiB and half a CPU whose sysinfo and
# sched_getaffinity go to seccompagent. Run as root with the agent serving:
#   bin/seccompagent serve &            (or the systemd unit)
#   examples/runc/run.sh                 (prints nproc, free, uptime inside)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
socket=${SECCOMPAGENT_SOCKET:-/run/seccompagent/seccompagent.sock}
bundle=$(mktemp -d /tmp/seccompagent-runc-example.XXXXXX)
trap 'runc delete -f seccompagent-example >/dev/null 2>&1 || true; rm -rf "$bundle"' EXIT

"$top/test/rootfs/build.sh" "$bundle/rootfs" >/dev/null
cd "$bundle"
runc spec
# Limits, an absolute cgroup path (runc 1.1 nests relative ones under its own
# cgroup), and the seccomp section that hands the listener fd to the agent.
jq --arg sock "$socket" '
  .process.terminal = false
  | .process.args = ["sh", "-c", "echo nproc: $(nproc); free; uptime"]
  | .linux.cgroupsPath = "/seccompagent-example"
  | .linux.resources.memory = {"limit": 268435456}
  | .linux.resources.cpu = {"quota": 50000, "period": 100000}
  | .linux.seccomp = {
      "defaultAction": "SCMP_ACT_ALLOW",
      "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
      "listenerPath": $sock,
      "syscalls": [{"names": ["sysinfo", "sched_getaffinity"], "action": "SCMP_ACT_NOTIFY"}]
    }' config.json > config.json.new && mv config.json.new config.json
runc run seccompagent-example
