#!/usr/bin/env python3
"""Classify perf script samples (cpu-clock, -g) of the ringmx process into connection stages
by the frames of each sample's stack (kernel frames are reliable; user frames by leaf symbol)."""
import sys, collections, subprocess
RULES = [  # first match wins, checked against every frame, leaf first
 ("commit (io-wq, fs, fdatasync)", ("io_wq_worker", "ext4_", "jbd2", "file_fsync", "vfs_fsync", "io_fsync", "submit_bio", "blk_", "store_", "segment_")),
 ("accept", ("io_accept", "do_accept", "__sys_accept", "inet_accept", "inet_csk_accept", "io_accept")),
 ("socket options (setsockopt)", ("setsockopt",)),
 ("peer address (getpeername)", ("getpeername", "inet_getname", "inet_ntop")),
 ("lingering close: shutdown", ("__GI___shutdown", "__sys_shutdown", "io_shutdown", "inet_shutdown", "tcp_shutdown")),
 ("close", ("io_close", "__fput", "tcp_close", "filp_close", "close_fd", "sock_close", "inet_release")),
 ("client table (per-client limits)", ("client_table_",)),
 ("message: Received: date, queue id, record crc", ("rfc5322_date", "queue_id_format", "crc32c", "msg_start", "commit_done", "queue_heap")),
 ("timers", ("timer_arm", "timer_cancel", "timer_wheel", "timer_advance", "timer_expire", "io_timeout", "hrtimer_", "clock_gettime", "__vdso", "deadline")),
 ("log lines", ("log_", "vsnprintf", "vfprintf", "__printf", "snprintf", "strftime", "localtime", "gmtime", "__strftime")),
 ("receive", ("io_recv", "tcp_recvmsg", "sock_recvmsg", "buf_ring")),
 ("send", ("io_send", "tcp_sendmsg", "sock_sendmsg", "__tcp_push", "tcp_write_xmit")),
 ("SMTP session (parse, replies)", ("smtp_", "txn_", "lex", "addr_", "data_dfa", "session", "policy", "esmtp", "conn_")),
 ("TCP input/softirq (handshake, ACKs, FIN)", ("tcp_v4_rcv", "tcp_rcv", "net_rx", "__netif_receive", "process_backlog", "do_softirq", "ip_rcv", "tcp_v4_do_rcv")),
 ("io_uring wait, wake-ups, scheduling", ("io_cqring_wait", "schedule", "finish_task_switch", "try_to_wake_up", "io_uring_enter", "task_work", "io_req_task")),
]
def classify(frames):
    for name, keys in RULES:
        for f in frames:
            if any(k in f for k in keys):
                return name
    return "other"
data = sys.argv[1]
out = subprocess.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym"], capture_output=True, text=True).stdout
counts = collections.Counter(); total = 0; frames = []; comm = None
def flush():
    global total
    if frames:
        counts[classify(frames)] += 1; total += 1
for line in out.split("\n") + [""]:
    if not line.strip():
        flush(); frames = []; continue
    if not line.startswith("\t"):
        frames = []
        if "iou-wrk" in line:
            frames.append("io_wq_worker")
        continue
    parts = line.split()
    if len(parts) >= 2:
        frames.append(parts[1])
flush()
for name, n in counts.most_common():
    print("| %s | %.1f%% |" % (name, 100.0 * n / total))
print("| samples | %d |" % total)
if len(sys.argv) > 2:
    leaf = collections.Counter(); frames = []
    for line in out.split("\n") + [""]:
        if not line.strip():
            if frames and classify(frames) == sys.argv[2]:
                leaf[" < ".join(frames[:4])] += 1
            frames = []; continue
        if not line.startswith("\t"):
            frames = ["io_wq_worker"] if "iou-wrk" in line else []; continue
        p = line.split()
        if len(p) >= 2: frames.append(p[1])
    for k, n in leaf.most_common(25): print(n, k)
