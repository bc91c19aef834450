"""What the kernel says about the bench's processes: trees, CPU time, memory, and their PostgreSQL/Redis sockets."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

TICK = os.sysconf("SC_CLK_TCK")


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, for every process on the machine."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree(root: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    """root and all its descendants that are alive."""
    kids = kids if kids is not None else children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            out.append(pid)
            todo.extend(kids.get(pid, []))
    return out


def cpu_seconds(pid: int, reaped: bool = True) -> float:
    """utime + stime of a process (plus the children it reaped, with reaped), in seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")": state is fields[0], so utime (14th field of stat) is fields[11]
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / TICK


def named_cpu(names: dict[str, str]) -> dict[str, float]:
    """CPU seconds so far of every process whose command name starts with each prefix (label -> prefix): the
    whole PostgreSQL and Redis servers, other databases' work included; with what they reaped (ended backends)."""
    totals = {label: 0.0 for label in names}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(f"/proc/{entry.name}/comm").read_text().strip()
        except OSError:
            continue
        for label, prefix in names.items():
            if comm.startswith(prefix):
                totals[label] += cpu_seconds(int(entry.name))
    return totals


def machine_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores; not idle, not waiting for I/O)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB; zeros when the process is gone."""
    rss = hwm = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def _established_to(ports: set[int]) -> dict[int, int]:
    """socket inode -> remote port, for established TCP connections to any of ports."""
    found: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] != "01":  # ESTABLISHED
                continue
            port = int(parts[2].rsplit(":", 1)[1], 16)
            if port in ports:
                found[int(parts[9])] = port
    return found


def sockets_to(pids: list[int], ports: set[int]) -> dict[int, dict[int, int]]:
    """pid -> {remote port: established connections}, for connections to any of ports (e.g. 5432, 6379)."""
    inodes = _established_to(ports)
    out: dict[int, dict[int, int]] = {}
    for pid in pids:
        counts = {port: 0 for port in ports}
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                port = inodes.get(int(link[8:-1]))
                if port is not None:
                    counts[port] += 1
        out[pid] = counts
    return out


@dataclass
class Peaks:
    """The highest values a Monitor saw."""

    rss_kib: dict[int, int] = field(default_factory=dict)  # pid -> peak VmRSS (and VmHWM when read)
    role: dict[int, str] = field(default_factory=dict)  # pid -> "web master", "web worker", "consumer", ...
    sockets: dict[int, dict[int, int]] = field(default_factory=dict)  # pid -> port -> peak connections
    pg_total: int = 0  # backends on the bench database (pg_stat_activity), the monitor's own excluded
    redis_clients: int = 0  # connected_clients of the whole Redis server (other users of it included)
    group_rss_kib: dict[str, int] = field(default_factory=dict)  # group -> peak of the sum of VmRSS
    samples: int = 0


class Monitor(threading.Thread):
    """Samples the process groups every `every` seconds: memory, sockets to PostgreSQL/Redis, connection counts."""

    def __init__(self, groups: dict[str, int], database_url: str, dbname: str, redis_url: str,
                 every: float = 0.5, sockets: bool = True):
        super().__init__(name="bench-monitor", daemon=True)
        self.groups, self.every, self.with_sockets = groups, every, sockets
        self.database_url, self.dbname, self.redis_url = database_url, dbname, redis_url
        self.pg_port = urlsplit(database_url).port or 5432
        self.redis_port = urlsplit(redis_url).port or 6379
        self.peaks = Peaks()
        self.stopping = threading.Event()
        self.error: str | None = None

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def run(self) -> None:
        import psycopg2
        import redis
        conn = store = None
        try:
            conn = psycopg2.connect(self.database_url, connect_timeout=5)
            conn.autocommit = True
            store = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            while True:
                self.sample(conn, store)
                if self.stopping.wait(self.every):
                    self.sample(conn, store)  # the last state too
                    return
        except Exception as exc:  # a monitor failure must not stop the run; it is reported
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if conn is not None:
                conn.close()
            if store is not None:
                store.close()

    def sample(self, conn, store) -> None:
        peaks = self.peaks
        kids = children_map()
        every_pid = []
        for group, root in self.groups.items():
            pids = tree(root, kids)
            total = 0
            for pid in pids:
                rss, hwm = memory_kib(pid)
                total += rss
                peaks.rss_kib[pid] = max(peaks.rss_kib.get(pid, 0), rss, hwm)
                peaks.role.setdefault(pid, group if pid == root or group != "web" else "web worker")
                if pid == root and group == "web":
                    peaks.role[pid] = "web master"
            peaks.group_rss_kib[group] = max(peaks.group_rss_kib.get(group, 0), total)
            every_pid += pids
        if self.with_sockets:
            for pid, counts in sockets_to(every_pid, {self.pg_port, self.redis_port}).items():
                seen = peaks.sockets.setdefault(pid, {})
                for port, count in counts.items():
                    seen[port] = max(seen.get(port, 0), count)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        (self.dbname,))
            peaks.pg_total = max(peaks.pg_total, cur.fetchone()[0])
        peaks.redis_clients = max(peaks.redis_clients, int(store.info("clients")["connected_clients"]))
        peaks.samples += 1


def group_cpu(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each process tree (its live processes, and what their parents reaped)."""
    kids = children_map()
    return {group: sum(cpu_seconds(pid) for pid in tree(root, kids)) for group, root in roots.items()}

