"""What the load scripts read from /proc: a process's CPU time and RSS (alone or with its
descendants, for a gateway with worker processes) and the kernel's memory for sockets."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all of its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_and_rss(root: int) -> tuple[float, int]:
    """CPU seconds and RSS bytes summed over ``root`` and its descendants."""
    cpu, rss = 0.0, 0
    for pid in tree_pids(root):
        try:
            cpu += cpu_seconds(pid)
            rss += rss_bytes(pid)
        except (OSError, RuntimeError):  # exited meanwhile
            continue
    return cpu, rss


def kernel_socket_bytes() -> int:
    """Kernel slab memory (sockets, inodes, epoll items...) plus TCP buffer pages in use."""
    slab = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            slab = int(line.split()[1]) * 1024
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return slab + int(fields[fields.index("mem") + 1]) * PAGE
    raise RuntimeError("no TCP line in /proc/net/sockstat")
