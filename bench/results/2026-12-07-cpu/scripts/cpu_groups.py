#!/usr/bin/env python3
"""cpu_groups.py PERF_DATA BUILD_DIR [PID...]: puts each cpu-clock sample (perf record -g) of the
given processes (every thread, io-wq included; all samples when no PID is given) into one group:
io-wq, the kernel's TCP send / receive / input / connection set-up and tear-down, wake-ups and the
scheduler, io_uring itself, other kernel work, and in user space ringmx's code by module (the
object file that defines the leaf symbol), the allocator, libc, the vDSO clock; prints shares.
Kernel samples are grouped by the first rule (in the order below) that matches any kernel frame."""
import collections, glob, os, subprocess, sys

KERNEL_RULES = [
    ("kernel: TCP send (with loopback delivery to the peer)",
     ("tcp_sendmsg", "tcp_push", "__tcp_push_pending_frames", "tcp_write_xmit", "sock_sendmsg",
      "io_send", "__sys_sendto", "ksys_write", "sock_write_iter")),
    ("kernel: TCP receive", ("tcp_recvmsg", "sock_recvmsg", "io_recv", "sock_read_iter", "ksys_read")),
    ("kernel: connection set-up and tear-down (accept, shutdown, close)",
     ("inet_csk_accept", "do_accept", "io_accept", "__sys_accept", "inet_shutdown", "tcp_shutdown",
      "tcp_close", "__fput", "sock_close", "inet_release", "io_close", "getpeername", "inet_getname",
      "__sys_shutdown", "tcp_set_state")),
    ("kernel: TCP input in softirq (ACKs, timers)", ("tcp_v4_rcv", "net_rx_action", "tcp_write_timer",
      "tcp_delack_timer", "ip_rcv", "process_backlog")),
    ("kernel: wake-ups and the scheduler",
     ("schedule", "try_to_wake_up", "finish_task_switch", "io_cqring_wait", "pick_next", "enqueue_task",
      "dequeue_task", "ttwu", "wake_up", "do_epoll_wait", "ep_poll", "do_select", "do_sys_poll",
      "hrtimer", "__wake_up", "idle")),
    ("kernel: io_uring itself (submission, completion, task work)",
     ("io_submit_sqes", "io_issue_sqe", "io_uring_enter", "io_run_local_work", "io_req_", "io_cq",
      "io_fill_cqe", "__io_", "io_uring", "io_poll", "io_arm_poll", "io_kbuf", "io_buffer",
      "io_put_kbuf", "io_free_batch", "io_submit_flush", "tctx_task_work", "io_")),
]
# Matched at the start of a frame's name only (as substrings they would take folio_*, ...).
PREFIX_ONLY = {"io_", "__io_", "io_req_", "io_cq", "io_fill_cqe", "io_poll", "io_arm_poll", "io_kbuf",
               "io_buffer", "io_put_kbuf", "io_free_batch", "io_submit_flush", "io_submit_sqes",
               "io_issue_sqe", "io_run_local_work", "io_send", "io_recv", "io_accept", "io_close"}
IOWQ_RULES = [
    ("io-wq: fdatasync (ext4, jbd2, block)", ("ext4_sync_file", "file_write_and_wait", "jbd2",
      "blk_", "submit_bio", "vfs_fsync", "io_fsync", "file_fdatawait", "filemap_fdatawait",
      "__filemap_fdatawrite")),
    ("io-wq: write into the page cache", ("ext4_buffered_write", "generic_perform_write",
      "io_write", "ext4_file_write", "vfs_write", "copy_page_from_iter", "ext4_da_")),
]

def symbol_modules(build):
    mods = {}
    for o in glob.glob(os.path.join(build, "CMakeFiles", "*.dir", "**", "*.o"), recursive=True):
        if "/tools/" in o or "test" in o or "bench" in o:
            continue
        rel = o.split(".dir/", 1)[1][:-2]  # e.g. core/worker.c
        out = subprocess.run(["nm", "--defined-only", o], capture_output=True, text=True).stdout
        for line in out.split("\n"):
            p = line.split()
            if len(p) == 3 and p[1] in "tTwW":
                mods.setdefault(p[2], rel)
    return mods

ALLOC = ("malloc", "free", "calloc", "realloc", "je_", "_int_", "tcache", "arena", "sdallocx",
         "mallocx", "rallocx", "posix_memalign", "aligned_alloc", "memalign")

def is_kernel(dso):
    return dso.startswith("[kernel") or dso.startswith("[unknown]") and False

def user_group(sym, dso, mods):
    base = os.path.basename(dso.strip("()"))
    if "vdso" in base:
        return "user: clock (vDSO)"
    if "jemalloc" in base or any(sym.startswith(a) or a in sym for a in ALLOC if base.startswith("libc")):
        return "user: allocator"
    if base.startswith("libc"):
        return "user: libc (memcpy, memchr, string, formatting)"
    if base.startswith("liburing"):
        return "user: liburing"
    if base.startswith("libwolfssl") or base.startswith("libcrypt"):
        return "user: crypto"
    if base.startswith("libpostfix") or base == "smtp-sink":
        return "user: smtp-sink and Postfix libraries"
    if sym in mods:
        return "user: ringmx " + mods[sym]
    if base == "ringmx":
        return "user: ringmx (other)"
    return "user: other (%s)" % base

def classify(comm, frames, mods):
    """frames: [(sym, dso)] leaf first."""
    if not frames:
        return "other"
    kframes = [s for s, d in frames if d.startswith("[kernel")]
    if comm.startswith("iou-wrk"):
        for name, keys in IOWQ_RULES:
            if any(any(k in f for k in keys) for f in kframes):
                return name
        return "io-wq: other (scheduling, io-wq itself)"
    leaf_sym, leaf_dso = frames[0]
    if leaf_dso.startswith("[kernel"):
        for name, keys in KERNEL_RULES:
            for f in kframes:
                if any(f.startswith(k) if k in PREFIX_ONLY else k in f for k in keys):
                    return name
        return "kernel: other (system call entry, page faults, ...)"
    return user_group(leaf_sym, leaf_dso, mods)

def main():
    data, build = sys.argv[1], sys.argv[2]
    pids = set(sys.argv[3:])
    mods = symbol_modules(build)
    out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,pid,tid,ip,sym,dso"],
                         capture_output=True, text=True).stdout
    counts = collections.Counter()
    stacks = collections.Counter()  # SHOW=group prefix: the commonest stacks of that group
    show = os.environ.get("SHOW")
    total = 0
    comm, pid, frames = None, None, []
    def flush():
        nonlocal total
        if comm is not None and (not pids or pid in pids):
            g = classify(comm, frames, mods)
            counts[g] += 1
            total += 1
            if show and g.startswith(show):
                thread = "io-wq" if comm.startswith("iou-wrk") else comm
                stacks[thread + ": " + " < ".join(f[0] for f in frames[:7])] += 1
    for line in out.split("\n"):
        if not line.strip():
            flush(); comm, frames = None, []
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            flush(); frames = []
            p = line.split()
            # "comm pid/tid" or "comm pid tid"; comm may contain spaces
            idx = next(i for i in range(len(p)) if p[i].split("/")[0].isdigit())
            comm = " ".join(p[:idx]); pid = p[idx].split("/")[0]
            continue
        p = line.split(None, 1)
        if len(p) == 2:
            rest = p[1]
            dso = rest[rest.rfind("("):] if rest.endswith(")") else ""
            sym = rest[:rest.rfind("(")].strip() if dso else rest.strip()
            sym = sym.split("+0x")[0]
            frames.append((sym, dso.strip("()")))
    flush()
    groups = collections.Counter()
    for name, n in counts.items():
        groups[name.split(":")[0]] += n
    for name, n in sorted(counts.items(), key=lambda kv: (kv[0].split(":")[0], -kv[1])):
        print("| %s | %.1f%% |" % (name, 100.0 * n / total))
    print("| samples | %d |" % total)
    for g, n in groups.most_common():
        print("total %s %.1f%%" % (g, 100.0 * n / total))
    for k, n in stacks.most_common(int(os.environ.get("SHOW_TOP", "15"))):
        print("%5d %s" % (n, k))

main()
