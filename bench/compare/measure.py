"""What the comparison reads from the machine while a server runs.

- ProcTree: CPU seconds (user + system) and memory of a server's whole
  process tree, from /proc. CPU counts live processes and, through the
  cutime/cstime of their parents, the children they already reaped, so a
  Postfix smtpd or a Haraka worker that ends during a run still counts.
- RssSampler: a thread that samples the tree's RSS while a load runs and
  keeps the largest value.
- IowqSampler: a thread that samples the CPU time of the tree's io_uring
  worker threads (iou-wrk-*: the blocking file work io_uring punts, such
  as buffered writes and fdatasync), so a run reports their share of the
  server's CPU.
- established_conns(): TCP connections a server has accepted on a port.
- SinkCounter: the message counter that `smtp-sink -c` writes to its
  stdout (one "sess=N quit=N mesg=N" record per event, CR separated).
- Prometheus text parsing for ringmx's /metrics and histogram quantiles.
- loadavg(), cpu_busy_s(): /proc/loadavg, /proc/stat.

Nothing here starts or stops a process.
"""

import os
import re
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (which may hold
    spaces and parentheses), or None when the process is gone."""
    try:
        data = _read("/proc/%d/stat" % pid)
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()


def _children_map():
    """{ppid: [pid, ...]} over every process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f is None:
            continue
        out.setdefault(int(f[1]), []).append(int(name))
    return out


class TreeSample:
    """One look at a process tree: CPU seconds, summed RSS, process count."""

    def __init__(self, cpu_s, rss_kib, procs, pids):
        self.cpu_s = cpu_s
        self.rss_kib = rss_kib
        self.procs = procs
        self.pids = pids


class ProcTree:
    """The process tree under root_pid (root_pid itself included)."""

    def __init__(self, root_pid):
        self.root_pid = root_pid

    def pids(self):
        kids = _children_map()
        out, todo = [], [self.root_pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(kids.get(pid, ()))
        return out

    def sample(self, pids=None):
        """CPU and RSS of the tree now. Fields 14-17 of stat are utime,
        stime, cutime, cstime (ticks); 24 is RSS (pages)."""
        pids = self.pids() if pids is None else pids
        ticks = 0
        rss = 0
        alive = []
        for pid in pids:
            f = _stat_fields(pid)
            if f is None:
                continue
            alive.append(pid)
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
            rss += int(f[21])
        return TreeSample(ticks / CLK_TCK, rss * PAGE_KIB, len(alive), alive)

    def pss_kib(self):
        """Proportional set size summed over the tree (shared pages split
        between the processes that map them), from smaps_rollup."""
        total = 0
        for pid in self.pids():
            try:
                data = _read("/proc/%d/smaps_rollup" % pid)
            except OSError:
                continue
            m = re.search(rb"^Pss:\s+(\d+) kB", data, re.M)
            if m:
                total += int(m.group(1))
        return total


class RssSampler(threading.Thread):
    """Samples tree RSS every interval_s until stop(); max_rss_kib is the
    largest sum seen. The process list is refreshed every few samples
    (walking /proc is the expensive part)."""

    def __init__(self, tree, interval_s=0.5):
        super().__init__(daemon=True)
        self.tree = tree
        self.interval_s = interval_s
        self.max_rss_kib = 0
        self.max_procs = 0
        self._stop_event = threading.Event()

    def run(self):
        pids = None
        n = 0
        while True:
            if n % 4 == 0:
                pids = None
            s = self.tree.sample(pids)
            pids = s.pids
            self.max_rss_kib = max(self.max_rss_kib, s.rss_kib)
            self.max_procs = max(self.max_procs, s.procs)
            n += 1
            if self._stop_event.wait(self.interval_s):
                return

    def stop(self):
        self._stop_event.set()
        self.join(timeout=30)


def _task_cpu(pid):
    """{tid: CPU seconds} of the io_uring worker threads of process pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            if not _read(base + "comm").startswith(b"iou-wrk"):
                continue
            data = _read(base + "stat")
        except OSError:
            continue
        f = data[data.rindex(b")") + 2:].split()
        out[int(tid)] = (int(f[11]) + int(f[12])) / CLK_TCK
    return out


class IowqSampler(threading.Thread):
    """CPU seconds the tree's io_uring worker threads (iou-wrk-*) used
    between start() and stop(). They come and go (an idle one exits after
    a few seconds), so each is sampled every interval_s and counted from
    its first look (0 if it appeared during the run) to its last: one that
    exits loses at most what it used since the last sample."""

    def __init__(self, tree, interval_s=0.2):
        super().__init__(daemon=True)
        self.tree = tree
        self.interval_s = interval_s
        self.first = {}
        self.last = {}
        self._stop_event = threading.Event()
        self._look(baseline=True)

    def _look(self, baseline=False):
        for pid in self.tree.pids():
            for tid, cpu in _task_cpu(pid).items():
                key = (pid, tid)
                if key not in self.first:
                    self.first[key] = cpu if baseline else 0.0
                self.last[key] = cpu

    def run(self):
        while not self._stop_event.wait(self.interval_s):
            self._look()

    def stop(self):
        self._stop_event.set()
        self.join()
        self._look()

    def cpu_s(self):
        return sum(self.last[k] - self.first[k] for k in self.last)


def established_conns(port):
    """Connections a server on local port has accepted and holds: TCP
    sockets in ESTABLISHED state on that port that belong to a file (inode
    not 0; a connection still waiting in the listen queue has none),
    IPv4 and IPv6."""
    want = ":%04X" % port
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "01" and parts[1].endswith(want) and parts[9] != "0":
                        n += 1
        except OSError:
            pass
    return n


def wait_conns_held(port, want, holder, max_s, stall_s, poll_s):
    """Waits until want connections to port are established, the count has
    not grown for stall_s, max_s has passed, or holder (the process
    opening them) has exited; returns the seconds waited."""
    t0 = time.monotonic()
    best, best_t = 0, t0
    while True:
        n = established_conns(port)
        now = time.monotonic()
        if n > best:
            best, best_t = n, now
        if n >= want or now - t0 > max_s or now - best_t > stall_s or \
                holder.poll() is not None:
            return time.monotonic() - t0
        time.sleep(poll_s)


class SinkCounter:
    """Reads the running counter smtp-sink -c appends to its stdout file.
    count() is the number of messages ended with "." so far."""

    TAIL_BYTES = 256
    MSG_RE = re.compile(rb"mesg=(\d+)")

    def __init__(self, path):
        self.path = path

    def count(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - self.TAIL_BYTES))
                tail = f.read()
        except OSError:
            return 0
        found = self.MSG_RE.findall(tail)
        # the last record may be cut by a write in progress; take the largest
        return max((int(x) for x in found), default=0)

    def wait_for(self, n, deadline, interval_s=0.02):
        """Polls until count() >= n or the monotonic deadline passes;
        returns (count, monotonic time of the poll that saw it)."""
        while True:
            c = self.count()
            now = time.monotonic()
            if c >= n or now >= deadline:
                return c, now
            time.sleep(interval_s)


# ---------------------------------------------------------------- Prometheus

_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
_LE_RE = re.compile(r'le="([^"]+)"')


def scrape(port, timeout_s=5.0):
    """The text of http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=timeout_s) as r:
        return r.read().decode("utf-8")


def histogram_buckets(text, name):
    """[(upper bound, cumulative count)] of histogram name, sorted, +Inf
    last, from Prometheus text format."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if not m or m.group(1) != name + "_bucket":
            continue
        le = _LE_RE.search(m.group(2) or "")
        if not le:
            continue
        bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
        out.append((bound, float(m.group(3))))
    out.sort()
    return out


def histogram_delta(after, before):
    """Per-bucket difference of two cumulative bucket lists of one histogram."""
    b = dict(before)
    return [(bound, count - b.get(bound, 0.0)) for bound, count in after]


def histogram_quantile(q, buckets):
    """The q-quantile (0..1) of cumulative buckets, interpolated linearly
    inside the bucket that holds it, as Prometheus' histogram_quantile()
    does (lower bound of the first bucket: 0). None when empty; the last
    finite bound when the quantile falls in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def cpu_busy_s():
    """CPU seconds the whole machine has spent busy since boot (every CPU:
    user, nice, system, irq, softirq, steal), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def loadavg():
    """(1, 5, 15 minute load averages)."""
    with open("/proc/loadavg") as f:
        parts = f.read().split()
    return float(parts[0]), float(parts[1]), float(parts[2])
