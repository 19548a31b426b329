/*
 * bounds.h - every bound in ringmx, in one place, with units last in names.
 *
 * Hard limits (_MAX) are compile-time ceilings that size static arrays and
 * bound the configuration; defaults (_DEFAULT) are what runs without a config
 * file. The _Static_asserts tie them together, so a change that breaks an
 * invariant (a receive buffer shorter than the longest legal line, say) does
 * not build. Includes nothing of ours.
 */
#ifndef RINGMX_BOUNDS_H
#define RINGMX_BOUNDS_H

/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets. */
#define SMTP_LOCAL_PART_MAX_BYTES 64
#define SMTP_DOMAIN_MAX_BYTES 255
#define SMTP_PATH_MAX_BYTES 256
/* RFC 5321 4.5.3.1.4: command line 512 octets including CRLF; extensions
 * (SIZE, BODY, SMTPUTF8 ...) raise it, so the configured limit defaults higher,
 * as Postfix's line_length_limit does. */
#define SMTP_COMMAND_LINE_MIN_BYTES 512
#define SMTP_COMMAND_LINE_DEFAULT_BYTES 2048
#define SMTP_COMMAND_LINE_MAX_BYTES 8192
/* One reply line we generate (RFC 5321 4.5.3.1.5: 512 octets). */
#define SMTP_REPLY_LINE_MAX_BYTES 512
/* Replies queued on one connection before the session pauses input. */
#define SMTP_REPLY_BUFFER_BYTES 4096

#define SMTP_RECIPIENTS_DEFAULT 1000      /* Postfix smtpd_recipient_limit */
#define SMTP_RECIPIENTS_MAX 100000
#define SMTP_MESSAGE_SIZE_DEFAULT_BYTES 10240000ull /* Postfix message_size_limit */
/* The largest message with the most recipients must fit one record, which
 * is one write (STORE_RECORD_MAX_BYTES): asserted below. */
#define SMTP_MESSAGE_SIZE_MAX_BYTES (1ull << 30)
#define SMTP_RECEIVED_HEADERS_MAX 100    /* RFC 5321 6.3 loop detection */
/* The error budget's defaults (Postfix's smtpd_soft_error_limit,
 * smtpd_hard_error_limit, smtpd_error_sleep_time, smtpd_junk_command_limit)
 * and the largest value each may be configured to. */
#define SMTP_SOFT_ERROR_LIMIT_DEFAULT 10
#define SMTP_HARD_ERROR_LIMIT_DEFAULT 20 /* then 421 and close */
#define SMTP_ERROR_SLEEP_MS_DEFAULT 1000
#define SMTP_JUNK_COMMAND_LIMIT_DEFAULT 100
#define SMTP_ERROR_LIMIT_MAX 10000
_Static_assert(SMTP_ERROR_LIMIT_MAX < 65535, "the session counts errors in 16 bits");
/* RCPTs past max_recipients (each answered 452 4.5.3) that a session may send
 * before each further one counts against the error budget (Postfix
 * smtpd_recipient_overshoot_limit, there per transaction, here per session). */
#define SMTP_RECIPIENT_OVERSHOOT_MAX 1000
#define SMTP_RECEIVED_HEADER_MAX_BYTES 1024

/* RFC 5321 4.5.3.2 (server side: at least 5 minutes waiting for a command;
 * 10 minutes for the data termination). */
#define TIMEOUT_COMMAND_DEFAULT_S 300
#define TIMEOUT_IDLE_DEFAULT_S 300
#define TIMEOUT_DATA_DEFAULT_S 600
/* In a message body the deadline moves by 1 / MIN_DATA_RATE seconds per byte
 * received, never beyond data_timeout from now (Postfix smtpd_min_data_rate):
 * a trickle cannot hold a slot for longer than data_timeout. */
#define MIN_DATA_RATE_DEFAULT_BYTES_PER_S 500
#define SHUTDOWN_GRACE_DEFAULT_S 30

#define CONNECTIONS_DEFAULT 10000        /* all workers together */
#define CONNECTIONS_MAX 1048576
#define WORKERS_MAX 256
#define LISTENERS_MAX 16

/* Forwarding. */
#define UPSTREAMS_MAX 8
/* Reply buffers (SMTP_REPLY_BUFFER_BYTES) a worker keeps for reuse: a
 * connection holds one only while replies wait to be sent, so an idle
 * session costs its slot and nothing more. */
#define REPLY_BUFFER_POOL_MAX 4096

/* The metrics endpoint: connections per worker, in a pool of their own
 * beside the SMTP slots (a scraper can never take an SMTP client's slot,
 * nor a crowd of idle HTTP clients), and the time one connection may take
 * from accept to the end of its response. */
#define HTTP_CONNECTIONS_MAX 32
#define HTTP_DEADLINE_MS 10000

/* Operator requests (common/control_proto.h): a request file larger than
 * this is refused whole; a longer file name is not ours and is ignored;
 * names read before one sort. */
#define CONTROL_REQUEST_MAX_BYTES 65536
#define CONTROL_NAME_MAX_BYTES 128
#define CONTROL_FILES_PER_BATCH 64

/* Configuration snapshots alive at once: the running one plus those still
 * used by sessions that started before a reload (SIGHUP). */
#define CONFIG_SNAPSHOTS_MAX 8
/* A user name for the `user` key (useradd allows 32 bytes). */
#define USER_NAME_MAX_BYTES 32
#define UPSTREAM_CONNECTIONS_DEFAULT 16 /* the pool's cap: it opens them as the backlog asks */
#define UPSTREAM_CONNECTIONS_MAX 64
#define UPSTREAM_TIMEOUT_DEFAULT_S 300
#define RETRY_MIN_DEFAULT_S 300          /* 5 minutes */
#define RETRY_MAX_DEFAULT_S 3600         /* 1 hour */
#define QUEUE_LIFETIME_DEFAULT_S (5 * 86400)

/* Provided buffer ring, per worker. */
#define RECV_BUFFER_BYTES 16384
#define RECV_BUFFER_COUNT 1024           /* a power of two */
/* Bytes carried across reads for one connection: a partial command line, or
 * input that arrived while the session waits (durability, reply flush).
 * Past the soft bound the connection's multishot recv is cancelled, so TCP
 * pushes back on the client; completions already on their way still land
 * (the kernel posts at most 32 per multishot wake-up before it looks at a
 * cancel), hence the hard bound's margin of 64 buffers. Past the hard bound
 * the connection is closed. */
#define CARRY_SOFT_MAX_BYTES (4 * RECV_BUFFER_BYTES)
#define CARRY_HARD_MAX_BYTES (CARRY_SOFT_MAX_BYTES + 64 * RECV_BUFFER_BYTES)
/* SO_RCVBUF of client sockets (set on the listeners, inherited on accept):
 * fixed, so that what the kernel holds for one connection, and so what can
 * land after a pause, is bounded (the kernel doubles the value). */
#define CLIENT_SOCKET_RCVBUF_BYTES (256 * 1024)

/* io_uring submission (core/ring): SQEs a ring may hold in user space while
 * the kernel refuses submissions with a full SQ (as many as the SQ, up to
 * this), and how long a full backlog waits for the kernel, retrying every
 * millisecond, before the process aborts (a refusal that outlasts it is not
 * a passing condition). */
#define RING_BACKLOG_SQES_MAX 4096
#define RING_SUBMIT_STALL_MAX_MS 10000

/* Store. */
#define SEGMENT_SIZE_DEFAULT_BYTES (64ull << 20)
#define SEGMENT_SIZE_MIN_BYTES (1ull << 20)
#define SEGMENT_SIZE_MAX_BYTES (1ull << 32)
#define STORE_MAX_DEFAULT_BYTES (8ull << 30)
#define INFLIGHT_DATA_DEFAULT_BYTES (256ull << 20)
#define COMMIT_BATCH_RECORDS_MAX 256     /* records in one group commit */
#define COMMIT_IOV_MAX 1024              /* <= IOV_MAX */

/* Logs (core/log). A line, newline included, is at most LOG_LINE_MAX_BYTES,
 * and one write of a worker's log buffer at most LOG_WRITE_MAX_BYTES, ending
 * at a line boundary: PIPE_BUF on Linux, the size up to which a write to a
 * pipe is atomic, so lines of different threads never interleave on a pipe.
 * Each worker buffers lines in two halves (one being written while the other
 * fills); a line that finds the filling half full is dropped and counted. */
#define LOG_LINE_MAX_BYTES 4096
#define LOG_WRITE_MAX_BYTES 4096
#define LOG_BUFFER_HALF_BYTES (64 * 1024)

/* ---- the event loop (core/worker, core/ring, core/timer) ---- */
#define RING_SQ_ENTRIES 4096             /* submission queue of a worker's ring */
/* io-wq threads per ring (bounded: file I/O; unbounded: sockets): buffered
 * segment writes and fdatasync are punted there. */
#define IOWQ_BOUNDED_WORKERS_MAX 2
#define IOWQ_UNBOUNDED_WORKERS_MAX 2
#define TIMER_TICK_MS 100                /* deadline resolution */
#define TIMER_SLOTS 1024                 /* a power of two: about 102 s per turn */
/* After the final reply: FIN sent, input read and dropped this long. */
#define LINGER_MS 2000
/* The 421 sent to a connection refused before its session. */
#define REJECT_REPLY_BYTES 256
/* A message body buffer starts this large when MAIL gave no SIZE=. */
#define TXN_BODY_INITIAL_BYTES 16384

/* ---- the metrics endpoint (proto/http, core/metrics_http) ---- */
#define HTTP_REQUEST_HEAD_MAX_BYTES 8192
#define HTTP_REQUEST_FIELDS_MAX 100
#define HTTP_RESPONSE_HEAD_MAX_BYTES 256 /* longest head written (checked by tests) */

/* ---- the upstream client (proto/smtp_client, core/forward) ---- */
/* A command line we send, CRLF included, is shorter than this (RFC 5321
 * 4.5.3.1.4). */
#define SMTP_CLIENT_COMMAND_MAX_BYTES 512
#define SMTP_CLIENT_REPLY_TEXT_MAX_BYTES 256  /* reply text kept per result */
#define SMTP_CLIENT_REPLY_LINE_MAX_BYTES 4096 /* longer: malformed */
#define SMTP_CLIENT_REPLY_LINES_MAX 1000      /* lines in one reply; more: malformed */
#define FORWARD_OUT_BUFFER_BYTES SMTP_REPLY_BUFFER_BYTES /* commands queued to send */
#define FORWARD_IDLE_QUIT_MS 10000            /* an idle upstream connection is closed */
#define FORWARD_UPSTREAM_DOWN_MS 30000        /* a refusing relay is skipped this long */
#define FORWARD_TLS_CLEAR_MS 3600000          /* after a failed opportunistic handshake,
					       * that relay is used in clear this long */
/* Connections to a fallback relay are renewed, so a recovered primary is
 * used again. */
#define FORWARD_FAILOVER_MAX_AGE_MS 60000
#define FORWARD_SEGMENT_FDS_MAX 32            /* open segment files cached for reads */
#define FORWARD_DIAG_BYTES 320                /* a reply as one log or DSN text */
/* A record that could not be read (no memory, no file) is tried again. */
#define FORWARD_READ_RETRY_MS 60000
/* Inflow control (core/flow.h): tokens kept at most, and how recent the
 * forwarder's last delivery must be for acceptance to be paced by it. */
#define FLOW_TOKENS_MAX 4096
#define FLOW_DELIVERING_MS 1000
#define IN_FLOW_DELAY_DEFAULT_S 1
#define IN_FLOW_BACKLOG_DEFAULT 10000
/* A forwarding slot keeps its record buffer, and room for this many
 * recipients, from one message to the next (no allocation per message);
 * a larger one is let go when its message is done. */
#define FORWARD_REC_KEEP_BYTES (256u * 1024)
#define FORWARD_MSG_RCPT_KEEP 100
#define FORWARD_REC_MIN_BYTES (16u * 1024) /* a new buffer is at least this */

/* ---- the store (storage/) ---- */
/* A stored envelope (storage/record.h: items of a 3-byte head and a value):
 * the fixed items (reverse path, body type, SMTPUTF8, declared size, client
 * address, HELO, protocol, and room for the TLS and AUTH facts to come) and
 * one item per recipient. With the Received: header and the body this sizes
 * the largest record a configuration can produce (config.c checks that a
 * segment holds it). */
#define RECORD_ENVELOPE_FIXED_MAX_BYTES 2048
#define RECORD_ENVELOPE_RCPT_MAX_BYTES (3 + SMTP_PATH_MAX_BYTES)
#define RECORD_ENVELOPE_MAX_BYTES(rcpts)                                                 \
	(RECORD_ENVELOPE_FIXED_MAX_BYTES +                                               \
	 (unsigned long long)(rcpts) * RECORD_ENVELOPE_RCPT_MAX_BYTES)
/* Zero-filling a segment goes in chunks of this size (O_DIRECT-aligned). */
#define SEGMENT_ZERO_CHUNK_BYTES (1u << 20)
#define STORE_SPARE_RETRY_MIN_MS 100     /* a failed spare is retried after this, */
#define STORE_SPARE_RETRY_MAX_MS 10000   /* doubling up to this */
#define STORE_BATCH_SLOTS 8              /* batches queued, those in flight included */
/* Group commits one shard may have in flight at once (commits_in_flight). */
#define STORE_COMMITS_IN_FLIGHT_MAX 4
#define COMMITS_IN_FLIGHT_DEFAULT 1
_Static_assert(STORE_COMMITS_IN_FLIGHT_MAX < STORE_BATCH_SLOTS,
	       "a batch always fills behind the commits in flight");
#define STORE_APPEND_PARTS_MAX 6         /* iovecs of one record */
#define STORE_RETIRED_FDS_MAX 16         /* sealed segments' fds awaiting close */
/* Records join a batch while it stays under this; a single larger record
 * gets a batch of its own. Keeps one commit near 10 ms at disk speed. */
#define STORE_BATCH_BYTES_MAX (8ull << 20)
/* Linux moves at most this much in one write (MAX_RW_COUNT); a longer
 * record would always be a short write. It also keeps a commit's byte
 * count within the int that store_commit_done() takes. */
#define STORE_RECORD_MAX_BYTES 0x7ffff000ull

/* A delivery log holds at most one entry per recipient per attempt of its
 * segment's records; a larger file read at recovery is refused (-EFBIG). */
#define DELIVERY_LOG_READ_MAX_BYTES (1ull << 30)

/* ---- logs (core/log) ---- */
/* A write that met EAGAIN or EINTR is tried again after this long ... */
#define LOG_WRITE_RETRY_MS 10
/* ... until no byte has gone out for this long; then its lines are dropped.
 * Also the longest a thread without a buffer waits for a full fd 2, and the
 * longest a worker's exit waits for its last lines. */
#define LOG_WRITE_STALL_MAX_MS 3000
/* A worker whose last LOG_BUSY_WINDOW_MS held LOG_BUSY_WINDOW_LINES lines or
 * more (1,000 a second) writes them in batches: once LOG_WRITE_BATCH_BYTES
 * wait (or a whole write's worth on a pipe), once its loop has waited
 * LOG_WRITE_IDLE_MS for anything else to do, or once the loop has seen them
 * wait for LOG_WRITE_DELAY_MS. Each write to a file is a trip through io-wq.
 * A quieter worker writes every line at once. */
#define LOG_BUSY_WINDOW_MS 100
#define LOG_BUSY_WINDOW_LINES 100
#define LOG_WRITE_BATCH_BYTES (16 * 1024)
#define LOG_WRITE_IDLE_MS 1
#define LOG_WRITE_DELAY_MS 10

/* ---- AUTH (proto/sasl, core/auth_users, core/auth_verify, core/auth_failures) ---- */
/* RFC 4954 section 4: a server accepts SASL response lines (AUTH's initial
 * response included) of at least 12288 octets, CRLF excluded; longer gets
 * 500 5.5.6. A line of base64 decodes to at most 3/4 of its length. */
#define SASL_RESPONSE_LINE_MAX_BYTES 12288
#define SASL_DECODED_MAX_BYTES (SASL_RESPONSE_LINE_MAX_BYTES / 4 * 3)
/* The auth_users file: its size, its entries, one user name and one crypt(3)
 * hash; a password longer than AUTH_PASSWORD_MAX_BYTES never matches
 * (libxcrypt's CRYPT_MAX_PASSPHRASE_SIZE is 512, NUL included). */
#define AUTH_USERS_FILE_MAX_BYTES (16u << 20)
#define AUTH_USERS_MAX 100000
#define AUTH_USER_NAME_MAX_BYTES 255
#define AUTH_HASH_MAX_BYTES 255
#define AUTH_PASSWORD_MAX_BYTES 511
/* Verifier threads (crypt_r costs milliseconds: never on a worker) and the
 * requests that may wait for them; a full queue is a temporary failure. */
#define AUTH_VERIFY_THREADS 2
#define AUTH_VERIFY_QUEUE_MAX 256
/* AUTH exchanges in progress at once per worker, each holding a decode
 * buffer of SASL_DECODED_MAX_BYTES; past it AUTH gets 454 4.7.0. */
#define AUTH_EXCHANGES_MAX 64
/* Failed AUTH per client address (IPv4 address, IPv6 /64): after
 * auth_fail_limit failures within the window, 421 4.7.0 and close, until the
 * entry expires (fail2ban's maxretry 5, findtime 10 minutes). */
#define AUTH_FAIL_LIMIT_DEFAULT 5
#define AUTH_FAIL_LIMIT_MAX 1000
#define AUTH_FAIL_WINDOW_S 600
#define AUTH_FAIL_SHARDS 16              /* a power of two */
#define AUTH_FAIL_SHARD_ENTRIES 1024     /* then the oldest entry is replaced */

/* ---- per-client limits and screening (core/client_table, proto/cidr) ---- */
/* The shared client table: 64-byte slots, a power of two of them, sized at
 * start-up for twice the connections it may have to track at once. */
#define CLIENT_TABLE_SLOTS_MIN 1024u
#define CLIENT_TABLE_SLOTS_MAX (1u << 22)   /* 256 MiB: a ceiling, not a goal */
#define CLIENT_TABLE_PROBE_SLOTS 8u         /* where a key may live: 8 cache lines */
#define CLIENT_TABLE_ATTEMPTS_MAX 8u        /* lost races before "untracked" */
#define CLIENT_TABLE_WAIT_SPINS_MAX 1024u   /* waiting for another thread's insert */
#define CLIENT_RATE_WINDOW_MS 60000u        /* rates are per minute (anvil's time unit) */
#define CLIENT_RATE_COUNT_MAX ((1u << 20) - 1) /* a window's count saturates here */
#define CLIENT_CONNECTIONS_PER_IP_DEFAULT 50 /* smtpd_client_connection_count_limit */
#define CLIENT_RATE_PER_IP_MAX 1000000u      /* per minute, both rates */
#define CLIENT_IPV6_PREFIX_DEFAULT 64
#define CLIENT_IPV6_PREFIX_MIN 16
#define SCREEN_CACHE_TTL_DEFAULT_S 86400     /* postscreen_greet_ttl */
#define GREET_PAUSE_MAX_S 60
/* Overload watermarks (core/overload): stress (452 4.3.1 at MAIL) and
 * refuse (421 4.3.2 at connect). The backlog's are off by default: the
 * store's own bound already covers an upstream outage. */
#define OVERLOAD_STORE_SOFT_DEFAULT_PCT 90
#define OVERLOAD_STORE_HARD_DEFAULT_PCT 97
#define OVERLOAD_INFLIGHT_SOFT_DEFAULT_PCT 80
#define OVERLOAD_INFLIGHT_HARD_DEFAULT_PCT 95
#define OVERLOAD_CHECK_MS 250 /* each worker judges its overload state this often */
/* CIDR lists (limits_exempt, proxy_trusted): entries, and the text of one. */
#define CIDR_LIST_MAX 64
#define CIDR_TEXT_MAX_BYTES 56               /* INET6_ADDRSTRLEN, "/128", rounded up */
_Static_assert((CLIENT_TABLE_SLOTS_MIN & (CLIENT_TABLE_SLOTS_MIN - 1)) == 0 &&
		       (CLIENT_TABLE_SLOTS_MAX & (CLIENT_TABLE_SLOTS_MAX - 1)) == 0,
	       "client table sizes are powers of two");
_Static_assert(CLIENT_TABLE_PROBE_SLOTS <= CLIENT_TABLE_SLOTS_MIN, "a probe stays in the table");
_Static_assert(CLIENT_RATE_PER_IP_MAX < CLIENT_RATE_COUNT_MAX,
	       "a rate limit is below the count where a window saturates");

/* ---- the store tool (tools/ringmx-store) ---- */
#define STORE_TOOL_VERIFY_RESCAN_DELAY_MS 200
#define STORE_TOOL_HANDOVER_WAIT_MS 10000      /* for ringmx to pick a request up */
#define STORE_TOOL_DELETE_CONFIRM_WAIT_MS 3000 /* then for its DELETED entry to be durable */
#define STORE_TOOL_POLL_INTERVAL_MS 20

/* ---- the PROXY protocol header (proto/proxy) ---- */
/* v1: the longest line a receiver must take, CRLF included ("PROXY UNKNOWN"
 * with two full IPv6 addresses and ports). */
#define PROXY_V1_LINE_MAX_BYTES 107
/* v2: a 16-byte head, then a block of addresses and TLVs whose length the
 * head gives (up to 65535). Ours is bounded: addresses, ALPN, AUTHORITY,
 * UNIQUE_ID and the SSL TLV's strings fit with room to spare; a balancer
 * that also sends the client certificate (haproxy's send-proxy-v2-ssl-cert)
 * goes past it and is refused. */
#define PROXY_V2_HEAD_BYTES 16
#define PROXY_V2_BLOCK_MAX_BYTES 2048
#define PROXY_V2_UNIQUE_ID_MAX_BYTES 128 /* the specification's bound */
#define PROXY_HEADER_MAX_BYTES (PROXY_V2_HEAD_BYTES + PROXY_V2_BLOCK_MAX_BYTES)

_Static_assert(RECV_BUFFER_BYTES > SMTP_COMMAND_LINE_MAX_BYTES,
	       "a receive buffer holds the longest legal command line");
_Static_assert(CARRY_SOFT_MAX_BYTES >= RECV_BUFFER_BYTES + SMTP_COMMAND_LINE_MAX_BYTES,
	       "the carry buffer holds a partial line plus one full read");
_Static_assert(CARRY_HARD_MAX_BYTES > CARRY_SOFT_MAX_BYTES, "hard above soft");
_Static_assert(CARRY_HARD_MAX_BYTES - CARRY_SOFT_MAX_BYTES >= 2 * CLIENT_SOCKET_RCVBUF_BYTES,
	       "a paused connection's socket buffer fits in the carry margin");
_Static_assert((RECV_BUFFER_COUNT & (RECV_BUFFER_COUNT - 1)) == 0,
	       "buffer ring size is a power of two");
_Static_assert(SMTP_PATH_MAX_BYTES >= SMTP_LOCAL_PART_MAX_BYTES + 1 + 64,
	       "a path holds a full local part and a domain");
_Static_assert(SMTP_REPLY_BUFFER_BYTES >= 4 * SMTP_REPLY_LINE_MAX_BYTES,
	       "the reply buffer holds an EHLO response");
_Static_assert(COMMIT_IOV_MAX >= 4 * COMMIT_BATCH_RECORDS_MAX,
	       "each record needs at most four iovecs");
_Static_assert(SMTP_MESSAGE_SIZE_DEFAULT_BYTES <= SMTP_MESSAGE_SIZE_MAX_BYTES, "default in range");
_Static_assert(LOG_LINE_MAX_BYTES <= LOG_WRITE_MAX_BYTES, "a log line fits one write");
_Static_assert(LOG_BUFFER_HALF_BYTES >= 4 * LOG_LINE_MAX_BYTES,
	       "a log buffer half holds several of the longest lines");
_Static_assert(LOG_LINE_MAX_BYTES >= 4 * SMTP_PATH_MAX_BYTES + SMTP_DOMAIN_MAX_BYTES + 512,
	       "a message_accepted line holds an escaped path, a HELO name and the rest");

_Static_assert(SMTP_CLIENT_COMMAND_MAX_BYTES <= SMTP_COMMAND_LINE_MIN_BYTES,
	       "our commands fit the line every server must take");
_Static_assert(SMTP_CLIENT_REPLY_TEXT_MAX_BYTES < SMTP_CLIENT_REPLY_LINE_MAX_BYTES,
	       "reply text is a prefix of a line");
_Static_assert(FORWARD_DIAG_BYTES >= SMTP_CLIENT_REPLY_TEXT_MAX_BYTES + 32,
	       "a diagnostic holds a code, a status and the reply text");
_Static_assert(SEGMENT_ZERO_CHUNK_BYTES % 4096 == 0, "zero-fill chunks are O_DIRECT-aligned");
_Static_assert(STORE_SPARE_RETRY_MIN_MS > 0 && STORE_SPARE_RETRY_MIN_MS <= STORE_SPARE_RETRY_MAX_MS,
	       "a failed spare backs off");
_Static_assert(SEGMENT_SIZE_MAX_BYTES <= (1ull << 32) * 8,
	       "a queue id's 32-bit offset field (8-byte units) reaches the segment end");
_Static_assert(8 * 3 + SMTP_PATH_MAX_BYTES + 1 + 8 + 64 + SMTP_DOMAIN_MAX_BYTES + 16 + 512 <=
		       RECORD_ENVELOPE_FIXED_MAX_BYTES,
	       "the fixed envelope items fit their share");
_Static_assert(SMTP_MESSAGE_SIZE_MAX_BYTES + SMTP_RECEIVED_HEADER_MAX_BYTES +
		       RECORD_ENVELOPE_MAX_BYTES(SMTP_RECIPIENTS_MAX) + 4096 <=
		       STORE_RECORD_MAX_BYTES,
	       "the largest message with the most recipients fits one record");
_Static_assert(STORE_BATCH_BYTES_MAX <= STORE_RECORD_MAX_BYTES, "a batch is one write");
_Static_assert((TIMER_SLOTS & (TIMER_SLOTS - 1)) == 0, "timer slots are a power of two");
_Static_assert(LINGER_MS >= TIMER_TICK_MS && HTTP_DEADLINE_MS >= TIMER_TICK_MS,
	       "deadlines are longer than a tick");
_Static_assert(LOG_WRITE_RETRY_MS < LOG_WRITE_STALL_MAX_MS, "a stalled write is retried first");

_Static_assert(PROXY_HEADER_MAX_BYTES >= PROXY_V1_LINE_MAX_BYTES,
	       "the PROXY header buffer holds the longest v1 line");
_Static_assert(PROXY_V2_BLOCK_MAX_BYTES >= 2 * 108 + 3 + PROXY_V2_UNIQUE_ID_MAX_BYTES,
	       "a v2 block holds UNIX addresses and a full unique id");
_Static_assert(PROXY_HEADER_MAX_BYTES <= 65535, "a header length fits 16 bits");

_Static_assert(SASL_RESPONSE_LINE_MAX_BYTES >= 12288, "RFC 4954 section 4");
_Static_assert(SASL_RESPONSE_LINE_MAX_BYTES + 2 <= CARRY_SOFT_MAX_BYTES,
	       "the carry buffer holds the longest SASL response line");
_Static_assert((AUTH_FAIL_SHARDS & (AUTH_FAIL_SHARDS - 1)) == 0, "auth shards are a power of two");
_Static_assert(AUTH_FAIL_LIMIT_DEFAULT >= 1 && AUTH_FAIL_LIMIT_DEFAULT <= AUTH_FAIL_LIMIT_MAX,
	       "default in range");

#endif
