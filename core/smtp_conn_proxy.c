/*
 * smtp_conn_proxy.c - the PROXY protocol header of a connection, between
 * accept and admission (see smtp_conn_proxy.h). The parser (proto/proxy,
 * about 2 KiB) is allocated for the wait only: an established session
 * holds none.
 */
#include "smtp_conn_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "../proto/cidr.h"
#include "../proto/proxy.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

/* What a connection holds while it waits for its header. */
struct conn_proxy {
	struct proxy_parser parser;
	bool optional; /* optional mode: nothing in time is no header */
	bool fed;      /* some bytes went to the parser */
};

/* The connection is closed without a banner: counted, logged at info with
 * the balancer's address (c->peer is still the balancer's) and the reason. */
static void proxy_refuse(struct smtp_conns *sc, struct conn *c, const char *reason)
{
	struct log_msg m;
	if (log_begin(&m, LOG_INFO, "proxy_refused")) {
		log_add_u64(&m, "worker", sc->w->id);
		log_add_str(&m, "peer", c->peer.ip);
		log_add_str(&m, "reason", reason);
		log_end(&m);
	}
	metrics_inc(&sc->w->metrics->connections_rejected[METRICS_CONN_REJECT_PROXY]);
	c->flags &= ~CONN_PROXY_WAIT;
	free(c->proxy);
	c->proxy = NULL;
	smtp_conn_close(sc, c);
}

/* event=proxy_header at debug: the balancer, the client and the TLVs worth
 * knowing when tracing a balancer's set-up (values escaped by the log). */
static void log_proxy_header(struct smtp_conns *sc, const struct proxy_header *h,
			     const char *balancer, const char *client)
{
	struct log_msg m;
	if (!log_begin(&m, LOG_DEBUG, "proxy_header"))
		return;
	log_add_u64(&m, "worker", sc->w->id);
	log_add_str(&m, "peer", balancer);
	log_add_str(&m, "client", client);
	log_add_u64(&m, "version", h->version);
	if (h->authority.len)
		log_add_span(&m, "authority", h->authority);
	if (h->unique_id.len)
		log_add_u64(&m, "unique_id_bytes", h->unique_id.len);
	if (h->ssl_present)
		log_add_span(&m, "ssl_version", h->ssl_version);
	log_end(&m);
}

/* The peer's address in the 16-byte form of the CIDR lists. */
static bool peer_addr16(const struct smtp_peer *peer, uint8_t out[16])
{
	if (peer->ipv6)
		return inet_pton(AF_INET6, peer->ip, out) == 1;
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	return inet_pton(AF_INET, peer->ip, out + 12) == 1;
}

/* The header's source as the session's peer: an IPv4-mapped IPv6 address
 * is written as IPv4, as for a socket's own peer. False when it has no
 * usable text (c->peer is then unchanged). */
static bool peer_from_header(const struct proxy_header *h, struct smtp_peer *peer)
{
	struct smtp_peer p = { 0 };
	const struct sockaddr_storage *ss = &h->source;
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			if (!inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], p.ip, sizeof(p.ip)))
				return false;
			*peer = p;
			return true;
		}
		p.ipv6 = true;
	}
	if (proxy_address_text(ss, p.ip, sizeof(p.ip)) == 0)
		return false;
	*peer = p;
	return true;
}

/* Gives bytes that are the session's to it, unless the start closed c. */
static void proxy_pass_on(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n)
{
	if (n == 0 || !(c->flags & CONN_USED) ||
	    (c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_SEND | CONN_LINGER)))
		return;
	smtp_conn_received(sc, c, p, n);
}

/* The wait is over: the session starts (probe: a LOCAL header). */
static void proxy_wait_end(struct smtp_conns *sc, struct conn *c, bool probe)
{
	c->flags &= ~CONN_PROXY_WAIT;
	free(c->proxy);
	c->proxy = NULL;
	timer_cancel(&sc->wheel, &c->timer);
	smtp_conn_start(sc, c, probe);
}

/* The peer's first bytes were not a header (optional mode): what the parser
 * held of them, then p[0..n), are the session's, under the peer's own
 * address. */
static void proxy_absent(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n)
{
	uint8_t held[PROXY_HEADER_MAX_BYTES];
	size_t held_len = 0;
	if (c->proxy->fed) { /* the parser said ABSENT */
		struct span h = proxy_parser_held(&c->proxy->parser);
		RMX_ASSERT(h.len <= sizeof(held));
		held_len = h.len;
		if (held_len)
			memcpy(held, h.ptr, held_len);
	}
	log_debug("event=proxy_absent worker=%u peer=%s", sc->w->id, c->peer.ip);
	proxy_wait_end(sc, c, false);
	proxy_pass_on(sc, c, held, held_len);
	proxy_pass_on(sc, c, p, n);
}

bool smtp_conn_proxy_accept(struct smtp_conns *sc, struct conn *c, uint32_t i)
{
	const struct config *cfg = sc->cfg;
	enum proxy_protocol pp = config_listener_proxy(cfg, i);
	if (pp == PROXY_PROTOCOL_OFF)
		return false;
	uint8_t addr[16];
	bool trusted = peer_addr16(&c->peer, addr) && cidr_list_contains(&cfg->proxy_trusted, addr);
	if (!trusted) {
		if (pp == PROXY_PROTOCOL_OPTIONAL)
			return false; /* nothing of an untrusted peer is parsed */
		proxy_refuse(sc, c, "untrusted");
		return true;
	}
	c->proxy = malloc(sizeof(*c->proxy));
	if (!c->proxy) {
		smtp_conn_close(sc, c);
		return true;
	}
	c->proxy->optional = pp == PROXY_PROTOCOL_OPTIONAL;
	c->proxy->fed = false;
	proxy_parser_init(&c->proxy->parser,
			  c->proxy->optional ? PROXY_MODE_OPTIONAL : PROXY_MODE_REQUIRED);
	c->flags |= CONN_PROXY_WAIT;
	smtp_conn_arm_recv(sc, c);
	timer_arm(&sc->wheel, &c->timer, (uint64_t)cfg->proxy_timeout_s * 1000u);
	return true;
}

void smtp_conn_proxy_input(struct smtp_conns *sc, struct conn *c, const uint8_t *p, size_t n)
{
	RMX_ASSERT((c->flags & CONN_PROXY_WAIT) && c->proxy != NULL);
	size_t consumed = 0;
	c->proxy->fed = true;
	enum proxy_status st = proxy_parse(&c->proxy->parser, p, n, &consumed);
	switch (st) {
	case PROXY_NEED_MORE:
		return;
	case PROXY_ERROR:
		proxy_refuse(sc, c, proxy_error_name(c->proxy->parser.error));
		return;
	case PROXY_ABSENT:
		proxy_absent(sc, c, p, n);
		return;
	case PROXY_DONE:
		break;
	}
	RMX_ASSERT(consumed <= n);
	const struct proxy_header *h = &c->proxy->parser.header;
	char balancer[sizeof(c->peer.ip)];
	memcpy(balancer, c->peer.ip, sizeof(balancer));
	bool probe = h->local;
	if (h->address_known && !peer_from_header(h, &c->peer)) {
		proxy_refuse(sc, c, "address");
		return;
	}
	if (probe)
		log_debug("event=proxy_local worker=%u peer=%s", sc->w->id, balancer);
	else
		log_proxy_header(sc, h, balancer, c->peer.ip);
	proxy_wait_end(sc, c, probe);
	proxy_pass_on(sc, c, p + consumed, n - consumed);
}

void smtp_conn_proxy_timeout(struct smtp_conns *sc, struct conn *c)
{
	RMX_ASSERT((c->flags & CONN_PROXY_WAIT) && c->proxy != NULL);
	if (c->proxy->optional && !c->proxy->fed) {
		/* A trusted peer that says nothing: an ordinary client (one that
		 * stopped inside a signature is closed as in required mode). */
		proxy_absent(sc, c, NULL, 0);
		return;
	}
	proxy_refuse(sc, c, "timeout");
}
