/* SPDX-License-Identifier: ISC */
/*
 * peer: handshake, encrypted framing and the connection state machine.
 * See peer.h for the life cycle and proto/PROTOCOL.md for the bytes.
 */
#include "peer_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/util.h>

#include "netio.h"
#include "util.h"

/* The AUTH signature's domain (see PROTOCOL.md, "AUTH"). */
#define PEER_AUTH_DOMAIN "p2pvbd-auth-v1"

/*
 * Input is read until this many bytes wait unprocessed. It must hold one
 * whole frame, or a frame could never complete.
 */
#define PEER_IN_HIGH (2u * (WIRE_MAX_MSG + WIRE_TAG_LEN + WIRE_FRAME_HDR_LEN))

/*
 * Before authentication, input is read until this many bytes wait: the
 * handshake needs 96 bytes (HELLO) and then 121 (the AUTH frame), so a
 * stranger cannot make us buffer more than one read's worth.
 */
#define PEER_HANDSHAKE_IN_HIGH 4096u

/* The first frame each way is AUTH (PROTOCOL.md §6.1): its ciphertext length, exactly. */
#define PEER_AUTH_CT_LEN (1u + WIRE_KEY_LEN + 4u + WIRE_SIG_LEN + WIRE_TAG_LEN)

/* Most bytes moved by one read or write system call. */
#define PEER_IO_MAX (1024u * 1024u)

static const char *state_names[] = {"CONNECTING", "HELLO", "AUTH", "READY", "CLOSING", "DEAD"};

static void peer_on_data(void *arg);
static void peer_process_input(struct peer *p, struct evbuffer *in);
static void peer_on_end(void *arg, int err);
static void peer_write_cb(struct bufferevent *bev, void *arg);
static void peer_event_cb(struct bufferevent *bev, short what, void *arg);
static void peer_timed_out(struct peer *p, const char *what);

static void peer_set_state(struct peer *p, enum peer_state st)
{
	log_debug("peer %s: %s -> %s", p->name, state_names[p->state], state_names[st]);
	p->state = st;
}

/* Stop the deadlines (a closing or dead peer). */
static void peer_stop_clocks(struct peer *p)
{
	if (p->keepalive != NULL)
		event_del(p->keepalive);
	if (p->handshake_ev != NULL)
		event_del(p->handshake_ev);
	if (p->frame_ev != NULL)
		event_del(p->frame_ev);
}

/* Deferred free: runs from the event loop, after every callback of p returned. */
static void peer_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;

	(void)fd;
	(void)what;
	netio_reader_free(&p->rd);
	if (p->bev != NULL)
		bufferevent_free(p->bev);
	if (p->keepalive != NULL)
		event_free(p->keepalive);
	if (p->handshake_ev != NULL)
		event_free(p->handshake_ev);
	if (p->frame_ev != NULL)
		event_free(p->frame_ev);
	vcrypto_wipe(p->rx_key, sizeof(p->rx_key));
	vcrypto_wipe(p->tx_key, sizeof(p->tx_key));
	vcrypto_wipe(&p->kx, sizeof(p->kx));
	free(p->rx_plain);
	free(p->tx_plain);
	free(p);
}

static void peer_schedule_free(struct peer *p)
{
	struct timeval now = {0, 0};

	if (event_base_once(p->ctx->base, -1, EV_TIMEOUT, peer_free_cb, p, &now) != 0)
		fatal("event_base_once failed");
}

static void peer_notify_close(struct peer *p, int fatal_err, const char *reason)
{
	if (p->close_notified)
		return;
	p->close_notified = 1;
	if (p->ctx->ops->on_close != NULL)
		p->ctx->ops->on_close(p, fatal_err, reason);
}

static void peer_close_fatal(struct peer *p, int fatal_err, const char *reason)
{
	if (p->state == PEER_DEAD)
		return;
	peer_set_state(p, PEER_DEAD);
	if (p->bev != NULL) {
		bufferevent_disable(p->bev, EV_READ | EV_WRITE);
		bufferevent_setcb(p->bev, NULL, NULL, NULL, NULL);
	}
	netio_reader_pause(&p->rd);
	peer_stop_clocks(p);
	peer_notify_close(p, fatal_err, reason);
	peer_schedule_free(p);
}

void peer_close(struct peer *p, const char *reason)
{
	peer_close_fatal(p, 0, reason);
}

static void peer_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	struct wire_msg m = {.type = WIRE_KEEPALIVE};
	uint64_t idle_ns = (uint64_t)p->ctx->timeout_s * 1000000000u / 3;

	(void)fd;
	(void)what;
	if (p->state == PEER_READY && now_ns() - p->last_send_ns >= idle_ns)
		peer_send(p, &m);
}

int peer_handshake_s(const struct peer_ctx *ctx)
{
	return ctx->timeout_s > 0 && ctx->timeout_s < PEER_HANDSHAKE_MAX_S ? ctx->timeout_s
	                                                                   : PEER_HANDSHAKE_MAX_S;
}

/* The handshake's deadline passed before the peer was READY: drop it. */
static void peer_handshake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	char reason[160];

	(void)fd;
	(void)what;
	if (p->state == PEER_READY || p->state == PEER_CLOSING || p->state == PEER_DEAD)
		return;
	p->ctx->handshakes_late++;
	snprintf(reason, sizeof(reason), "handshake not done within %d s (in state %s)",
	         peer_handshake_s(p->ctx), state_names[p->state]);
	/* In AUTH the keys are up: tell the peer (E_TIMEOUT); before, just close. */
	if (p->state == PEER_AUTH)
		peer_close_error(p, WIRE_E_TIMEOUT, "%s", reason);
	else
		peer_close(p, reason);
}

/* Bytes of the frame at the head of in: all of it once its header is there, else 0. */
static uint64_t peer_head_frame_len(struct evbuffer *in)
{
	uint8_t hdr[WIRE_FRAME_HDR_LEN];
	int64_t ct_len;

	if (evbuffer_copyout(in, hdr, sizeof(hdr)) != (ev_ssize_t)sizeof(hdr))
		return 0;
	ct_len = wire_frame_len(hdr);
	return ct_len < 0 ? 0 : WIRE_FRAME_HDR_LEN + (uint64_t)ct_len;
}

/* How long the frame at the head of in may take to arrive, nanoseconds. */
static uint64_t peer_frame_allowance_ns(const struct peer *p, struct evbuffer *in)
{
	return (uint64_t)p->ctx->timeout_s * NS_PER_S +
	       peer_head_frame_len(in) * NS_PER_S / PEER_FRAME_MIN_RATE;
}

/*
 * After input was processed: start, extend or stop the deadline of the frame
 * that has begun to arrive. Only a READY peer that we read has one (before,
 * the handshake's deadline covers everything; while we do not read, the
 * frame's slowness would be ours).
 */
static void peer_frame_clock(struct peer *p)
{
	struct evbuffer *in = p->rd.in;
	uint64_t now, due;
	struct timeval tv;

	if (p->state != PEER_READY || p->read_paused || in == NULL ||
	    evbuffer_get_length(in) == 0) {
		p->frame_start_ns = 0;
		event_del(p->frame_ev);
		return;
	}
	now = now_ns();
	if (p->frame_start_ns == 0)
		p->frame_start_ns = now;
	due = p->frame_start_ns + peer_frame_allowance_ns(p, in);
	due = due > now ? due - now : 0;
	tv.tv_sec = (time_t)(due / NS_PER_S);
	tv.tv_usec = (suseconds_t)(due % NS_PER_S / 1000);
	event_add(p->frame_ev, &tv);
}

/* A frame began to arrive and is not complete by its deadline. */
static void peer_frame_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	uint64_t now = now_ns(), have, len;

	(void)fd;
	(void)what;
	if (p->state != PEER_READY || p->read_paused || p->frame_start_ns == 0 || p->rd.in == NULL)
		return;
	/* The loop's clock may run a little ahead of ours: not due yet, wait again. */
	if (now < p->frame_start_ns + peer_frame_allowance_ns(p, p->rd.in)) {
		peer_frame_clock(p);
		return;
	}
	/* Nothing at all for the timeout is the silence the reader reports too. */
	if (now - p->last_recv_ns >= (uint64_t)p->ctx->timeout_s * NS_PER_S) {
		peer_timed_out(p, "peer silent");
		return;
	}
	have = evbuffer_get_length(p->rd.in);
	len = peer_head_frame_len(p->rd.in);
	p->ctx->frames_late++;
	peer_close_error(p, WIRE_E_TIMEOUT,
	                 "a frame took more than %llu s to arrive (%llu of %llu bytes so far)",
	                 (unsigned long long)((now - p->frame_start_ns) / NS_PER_S),
	                 (unsigned long long)(len && have > len ? len : have),
	                 (unsigned long long)len);
}

static struct peer *peer_new(struct peer_ctx *ctx, void *owner)
{
	struct peer *p = xcalloc(1, sizeof(*p));
	struct timeval ka, hs = {peer_handshake_s(ctx), 0};

	p->ctx = ctx;
	p->owner = owner;
	/* The 2 MiB of scratch wait for the key exchange: a stranger costs less. */
	p->keepalive = event_new(ctx->base, -1, EV_PERSIST, peer_keepalive_cb, p);
	p->handshake_ev = event_new(ctx->base, -1, 0, peer_handshake_cb, p);
	p->frame_ev = event_new(ctx->base, -1, 0, peer_frame_cb, p);
	if (p->keepalive == NULL || p->handshake_ev == NULL || p->frame_ev == NULL)
		fatal("event_new failed");
	ka.tv_sec = ctx->timeout_s / 3 > 0 ? ctx->timeout_s / 3 : 1;
	ka.tv_usec = 0;
	event_add(p->keepalive, &ka);
	event_add(p->handshake_ev, &hs);
	p->last_send_ns = now_ns();
	p->last_recv_ns = p->last_send_ns;
	return p;
}

static void peer_setup_bev(struct peer *p)
{
	struct timeval tmo = {p->ctx->timeout_s, 0};

	/* The bufferevent only writes; reading is a netio_reader (netio.h). */
	bufferevent_setcb(p->bev, NULL, peer_write_cb, peer_event_cb, p);
	/* libevent moves at most 16 KiB per write by default: far too little. */
	bufferevent_set_max_single_write(p->bev, PEER_IO_MAX);
	bufferevent_setwatermark(p->bev, EV_WRITE, PEER_OUT_LOW, 0);
	bufferevent_set_timeouts(p->bev, NULL, &tmo);
	if (p->ctx->upload_limit != NULL)
		bufferevent_add_to_rate_limit_group(p->bev, p->ctx->upload_limit);
	bufferevent_disable(p->bev, EV_READ);
	bufferevent_enable(p->bev, EV_WRITE);
}

/* Start reading the connected socket; the read timeout drops a silent peer. */
static int peer_start_reading(struct peer *p)
{
	struct timeval tmo = {p->ctx->timeout_s, 0};

	return netio_reader_init(&p->rd, p->ctx->base, bufferevent_getfd(p->bev),
	                         PEER_HANDSHAKE_IN_HIGH, &tmo, peer_on_data, peer_on_end, p);
}

static void peer_set_sockopts(struct peer *p)
{
	evutil_socket_t fd = bufferevent_getfd(p->bev);
	int one = 1;

	if (fd < 0)
		return;
	/* Small messages (requests, haves) must not wait for Nagle. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	{
		int lowat = PEER_KERNEL_UNSENT;

		setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	}
}

static void peer_send_hello(struct peer *p)
{
	struct wire_hello h;

	memset(&h, 0, sizeof(h));
	h.min_version = WIRE_VERSION;
	h.max_version = WIRE_VERSION;
	memcpy(h.volume_id, p->ctx->volume_id, WIRE_ID_LEN);
	memcpy(h.source_key, p->ctx->source_key, WIRE_KEY_LEN);
	vcrypto_kx_generate(&p->kx);
	memcpy(h.kx_key, p->kx.pk, WIRE_KEY_LEN);
	wire_hello_encode(&h, p->hello_mine);
	bufferevent_write(p->bev, p->hello_mine, WIRE_HELLO_LEN);
}

struct peer *peer_connect(struct peer_ctx *ctx, const char *host, uint16_t port, void *owner)
{
	struct peer *p = peer_new(ctx, owner);

	p->initiator = 1;
	snprintf(p->name, sizeof(p->name), "%s:%u", host, port);
	p->bev = bufferevent_socket_new(ctx->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (p->bev == NULL)
		fatal("bufferevent_socket_new failed");
	peer_setup_bev(p);
	p->state = PEER_CONNECTING;
	log_debug("peer %s: connecting", p->name);
	/* The owner must not hear of a close before it has the pointer: callbacks
	 * that run inside the connect call are muted, and NULL is returned. */
	p->close_notified = 1;
	if (bufferevent_socket_connect_hostname(p->bev, ctx->dns, AF_UNSPEC, host, port) != 0 &&
	    p->state != PEER_DEAD)
		peer_close(p, "cannot start connection");
	if (p->state == PEER_DEAD)
		return NULL;
	p->close_notified = 0;
	return p;
}

struct peer *peer_start(struct peer_ctx *ctx, int fd, int initiator, const char *name, void *owner)
{
	struct peer *p = peer_new(ctx, owner);

	p->initiator = initiator;
	snprintf(p->name, sizeof(p->name), "%s", name);
	evutil_make_socket_nonblocking(fd);
	p->bev = bufferevent_socket_new(ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (p->bev == NULL) {
		evutil_closesocket(fd);
		peer_free_cb(-1, 0, p);
		return NULL;
	}
	peer_setup_bev(p);
	peer_set_sockopts(p);
	p->state = PEER_HELLO;
	if (peer_start_reading(p) != 0) {
		peer_free_cb(-1, 0, p);
		return NULL;
	}
	log_debug("peer %s: started (%s)", p->name, initiator ? "initiator" : "acceptor");
	if (initiator)
		peer_send_hello(p);
	return p;
}

struct peer *peer_accept(struct peer_ctx *ctx, int fd, const struct sockaddr *sa, int salen,
                         void *owner)
{
	char host[INET6_ADDRSTRLEN] = "?", name[INET6_ADDRSTRLEN + 8];
	uint16_t port = 0;

	(void)salen;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	snprintf(name, sizeof(name), "%s:%u", host, port);
	return peer_start(ctx, fd, 0, name, owner);
}

/* Encrypt plain (len bytes) as one frame onto the output buffer. */
static int peer_seal(struct peer *p, const uint8_t *plain, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(p->bev);
	struct evbuffer_iovec v;
	size_t total = WIRE_FRAME_HDR_LEN + len + WIRE_TAG_LEN;
	uint8_t *f;

	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total)
		return -1;
	f = v.iov_base;
	wire_put32(f, (uint32_t)(len + WIRE_TAG_LEN));
	vcrypto_seal(f + WIRE_FRAME_HDR_LEN, plain, len, f, WIRE_FRAME_HDR_LEN, p->tx_ctr++,
	             p->tx_key);
	v.iov_len = total;
	if (evbuffer_commit_space(out, &v, 1) != 0)
		return -1;
	p->last_send_ns = now_ns();
	return 0;
}

static int peer_send_raw(struct peer *p, const struct wire_msg *m)
{
	size_t n = wire_msg_encode(m, p->tx_plain, WIRE_MAX_MSG);

	if (n == 0) {
		log_error("peer %s: refusing to send an invalid %s message", p->name,
		          wire_type_name(m->type));
		return -1;
	}
	return peer_seal(p, p->tx_plain, n);
}

int peer_send(struct peer *p, const struct wire_msg *m)
{
	if (p->state != PEER_READY)
		return -1;
	return peer_send_raw(p, m);
}

int peer_send_piece(struct peer *p, uint32_t chunk, uint64_t gen, uint32_t offset, uint32_t len,
                    int (*fill)(void *arg, uint8_t *dst, size_t len, uint64_t off), void *arg,
                    uint64_t fill_off)
{
	struct evbuffer *out;
	struct evbuffer_iovec v;
	size_t plain_len = WIRE_PIECE_HDR_LEN + (size_t)len;
	size_t total = WIRE_FRAME_HDR_LEN + plain_len + WIRE_TAG_LEN;
	uint8_t *f, *body;

	if (p->state != PEER_READY || len == 0 || len > WIRE_MAX_BLOCK)
		return -1;
	out = bufferevent_get_output(p->bev);
	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total)
		return -1;
	f = v.iov_base;
	body = f + WIRE_FRAME_HDR_LEN;
	wire_piece_hdr_encode(body, chunk, gen, offset);
	if (fill(arg, body + WIRE_PIECE_HDR_LEN, len, fill_off) != 0)
		return -1; /* nothing committed: the reservation is simply dropped */
	wire_put32(f, (uint32_t)(plain_len + WIRE_TAG_LEN));
	/* Sealing in place: libsodium allows the output to alias the input. */
	vcrypto_seal(body, body, plain_len, f, WIRE_FRAME_HDR_LEN, p->tx_ctr++, p->tx_key);
	v.iov_len = total;
	if (evbuffer_commit_space(out, &v, 1) != 0)
		return -1;
	p->bytes_out += len;
	p->last_send_ns = now_ns();
	return 0;
}

size_t peer_out_len(const struct peer *p)
{
	if (p->bev == NULL || p->state == PEER_DEAD)
		return 0;
	return evbuffer_get_length(bufferevent_get_output(p->bev));
}

int peer_out_full(const struct peer *p)
{
	return peer_out_len(p) >= PEER_OUT_HIGH;
}

void peer_pause_read(struct peer *p)
{
	if (p->read_paused || p->state == PEER_DEAD)
		return;
	p->read_paused = 1;
	netio_reader_pause(&p->rd);
	peer_frame_clock(p); /* stops it: the wait is ours now */
}

void peer_resume_read(struct peer *p)
{
	if (!p->read_paused || p->state == PEER_DEAD || p->state == PEER_CLOSING)
		return;
	p->read_paused = 0;
	netio_reader_resume(&p->rd);
	/* Frames may already wait in the input buffer: process them now. */
	if (p->rd.in != NULL && evbuffer_get_length(p->rd.in) > 0)
		peer_on_data(p);
}

/*
 * After CLOSING has flushed (or failed to): release the connection. What we
 * sent last says why we close (ERROR, REFUSAL): a lingering close makes sure
 * the peer reads it (a source learns that a chunk it served is corrupt).
 */
static void peer_finish_closing(struct peer *p)
{
	if (evbuffer_get_length(bufferevent_get_output(p->bev)) == 0)
		netio_linger_close(p->ctx->base, bufferevent_getfd(p->bev));
	peer_set_state(p, PEER_DEAD);
	bufferevent_disable(p->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(p->bev, NULL, NULL, NULL, NULL);
	netio_reader_pause(&p->rd);
	peer_stop_clocks(p);
	peer_schedule_free(p);
}

/* Copy text from a peer into out for logging, replacing anything unprintable. */
static void peer_clean_text(char *out, size_t cap, const char *text, size_t len)
{
	size_t n = len < cap - 1 ? len : cap - 1;

	for (size_t i = 0; i < n; i++)
		out[i] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
	out[n] = '\0';
}

static int code_is_fatal(uint16_t code)
{
	return code == WIRE_E_WRONG_KEY || code == WIRE_E_WRONG_VOLUME || code == WIRE_E_AUTH ||
	       code == WIRE_E_VERSION;
}

/* Stop reading, tell the owner, and close once what is queued has been sent. */
static void peer_close_flush(struct peer *p, int fatal_err, const char *reason)
{
	peer_set_state(p, PEER_CLOSING);
	netio_reader_pause(&p->rd);
	if (p->handshake_ev != NULL)
		event_del(p->handshake_ev);
	if (p->frame_ev != NULL)
		event_del(p->frame_ev);
	peer_notify_close(p, fatal_err, reason);
	if (evbuffer_get_length(bufferevent_get_output(p->bev)) == 0) {
		peer_finish_closing(p);
		return;
	}
	/* The write callback fires once everything is sent. */
	bufferevent_setwatermark(p->bev, EV_WRITE, 0, 0);
}

/* peer_close_error and peer_close_bad_chunk; chunk and gen only if bad != 0. */
static void peer_vclose_error(struct peer *p, uint16_t code, int bad, uint32_t chunk, uint64_t gen,
                              const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));
static void peer_vclose_error(struct peer *p, uint16_t code, int bad, uint32_t chunk, uint64_t gen,
                              const char *fmt, va_list ap)
{
	char text[WIRE_MAX_TEXT + 1];

	if (p->state == PEER_DEAD || p->state == PEER_CLOSING)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	log_info("peer %s: closing: %s", p->name, text);

	if (p->state == PEER_READY || p->state == PEER_AUTH) {
		struct wire_msg m = {.type = WIRE_ERROR};

		m.u.error.code = code;
		m.u.error.text = text;
		m.u.error.text_len = (uint16_t)strlen(text);
		m.u.error.has_chunk = bad != 0;
		m.u.error.chunk = chunk;
		m.u.error.gen = gen;
		peer_send_raw(p, &m);
	} else if (p->state == PEER_HELLO && !p->initiator) {
		uint8_t rec[WIRE_MAGIC_LEN + 4 + WIRE_MAX_TEXT];
		size_t n = wire_refuse_encode(code, text, rec, sizeof(rec));

		bufferevent_write(p->bev, rec, n);
	} else {
		peer_close_fatal(p, code_is_fatal(code), text);
		return;
	}
	peer_close_flush(p, code_is_fatal(code), text);
}

void peer_close_error(struct peer *p, uint16_t code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	peer_vclose_error(p, code, 0, 0, 0, fmt, ap);
	va_end(ap);
}

void peer_close_bad_chunk(struct peer *p, uint32_t chunk, uint64_t gen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	peer_vclose_error(p, WIRE_E_BAD_DATA, 1, chunk, gen, fmt, ap);
	va_end(ap);
}

/* Verify that a hello names our volume and source key; returns a code or WIRE_OK. */
static uint16_t peer_check_hello(struct peer *p, const struct wire_hello *h, const char **why)
{
	if (h->min_version > WIRE_VERSION || h->max_version < WIRE_VERSION) {
		*why = "no common protocol version";
		return WIRE_E_VERSION;
	}
	if (memcmp(h->volume_id, p->ctx->volume_id, WIRE_ID_LEN) != 0) {
		*why = "the volume id is not the one this peer serves";
		return WIRE_E_WRONG_VOLUME;
	}
	if (memcmp(h->source_key, p->ctx->source_key, WIRE_KEY_LEN) != 0) {
		*why = "the source key (key= in the URI) is not this volume's source key";
		return WIRE_E_WRONG_KEY;
	}
	return WIRE_OK;
}

static void peer_send_auth(struct peer *p)
{
	struct wire_msg m = {.type = WIRE_AUTH};
	uint8_t signed_msg[VCRYPTO_HASH_LEN + 1 + 4];
	uint32_t flags = p->ctx->is_source ? WIRE_AUTH_SOURCE : 0;

	memcpy(signed_msg, p->transcript, VCRYPTO_HASH_LEN);
	signed_msg[VCRYPTO_HASH_LEN] = p->initiator ? 0 : 1;
	wire_put32(signed_msg + VCRYPTO_HASH_LEN + 1, flags);
	memcpy(m.u.auth.identity, p->ctx->identity->pk, WIRE_KEY_LEN);
	m.u.auth.flags = flags;
	vcrypto_sign(m.u.auth.sig, PEER_AUTH_DOMAIN, signed_msg, sizeof(signed_msg),
	             p->ctx->identity->sk);
	peer_send_raw(p, &m);
}

/* Both hellos are known: derive keys and send AUTH. */
static int peer_keys(struct peer *p, const uint8_t *their_hello, const struct wire_hello *h)
{
	struct vcrypto_hash_state st;

	vcrypto_hash_init(&st);
	if (p->initiator) {
		vcrypto_hash_update(&st, p->hello_mine, WIRE_HELLO_LEN);
		vcrypto_hash_update(&st, their_hello, WIRE_HELLO_LEN);
	} else {
		vcrypto_hash_update(&st, their_hello, WIRE_HELLO_LEN);
		vcrypto_hash_update(&st, p->hello_mine, WIRE_HELLO_LEN);
	}
	vcrypto_hash_final(&st, p->transcript);
	if (vcrypto_session_keys(p->rx_key, p->tx_key, &p->kx, h->kx_key, p->initiator,
	                         p->transcript, p->ctx->join_secret) != 0)
		return -1;
	vcrypto_wipe(p->kx.sk, sizeof(p->kx.sk));
	if (p->rx_plain == NULL)
		p->rx_plain = xmalloc(WIRE_MAX_MSG + WIRE_TAG_LEN);
	if (p->tx_plain == NULL)
		p->tx_plain = xmalloc(WIRE_MAX_MSG);
	peer_set_state(p, PEER_AUTH);
	peer_send_auth(p);
	return 0;
}

/* HELLO state input. Returns 1 if it consumed a record, 0 if it needs more bytes. */
static int peer_read_hello(struct peer *p, struct evbuffer *in)
{
	uint8_t buf[WIRE_MAGIC_LEN + 4 + WIRE_MAX_TEXT];
	size_t have = evbuffer_get_length(in);
	struct wire_hello h;
	const char *why = NULL;
	uint16_t code;

	if (have < WIRE_MAGIC_LEN)
		return 0;
	evbuffer_copyout(in, buf, WIRE_MAGIC_LEN);
	if (p->initiator && memcmp(buf, WIRE_REFUSE_MAGIC, WIRE_MAGIC_LEN) == 0) {
		const char *text;
		uint16_t text_len;
		size_t n = have < sizeof(buf) ? have : sizeof(buf);
		int r;

		evbuffer_copyout(in, buf, n);
		r = wire_refuse_decode(buf, n, &code, &text, &text_len);
		if (r == WIRE_NEED_MORE)
			return 0;
		if (r < 0) {
			peer_close(p, "malformed refusal from peer");
		} else {
			char reason[WIRE_MAX_TEXT + 64], clean[WIRE_MAX_TEXT + 1];

			peer_clean_text(clean, sizeof(clean), text, text_len);
			snprintf(reason, sizeof(reason), "refused by peer (%s): %s",
			         wire_code_name(code), clean);
			peer_close_fatal(p, code_is_fatal(code), reason);
		}
		return 1;
	}
	if (memcmp(buf, WIRE_HELLO_MAGIC, WIRE_MAGIC_LEN) != 0) {
		peer_close_error(p, WIRE_E_PROTOCOL, "not a p2pvbd peer (bad handshake magic)");
		return 1;
	}
	if (have < WIRE_HELLO_LEN)
		return 0;
	evbuffer_remove(in, buf, WIRE_HELLO_LEN);
	if (wire_hello_decode(buf, WIRE_HELLO_LEN, &h) != 0) {
		peer_close_error(p, WIRE_E_PROTOCOL, "malformed hello");
		return 1;
	}
	code = peer_check_hello(p, &h, &why);
	if (code != WIRE_OK) {
		if (p->initiator) {
			char reason[160];

			snprintf(reason, sizeof(reason), "peer's hello: %s", why);
			peer_close_fatal(p, 1, reason);
		} else {
			peer_close_error(p, code, "%s", why);
		}
		return 1;
	}
	if (!p->initiator)
		peer_send_hello(p);
	if (peer_keys(p, buf, &h) != 0)
		peer_close_error(p, WIRE_E_AUTH, "bad key exchange value");
	return 1;
}

static void peer_handle_auth(struct peer *p, const struct wire_msg *m)
{
	uint8_t signed_msg[VCRYPTO_HASH_LEN + 1 + 4];

	if (m->type != WIRE_AUTH) {
		peer_close_error(p, WIRE_E_PROTOCOL, "expected AUTH, got %s",
		                 wire_type_name(m->type));
		return;
	}
	memcpy(signed_msg, p->transcript, VCRYPTO_HASH_LEN);
	signed_msg[VCRYPTO_HASH_LEN] = p->initiator ? 1 : 0; /* the peer's role */
	wire_put32(signed_msg + VCRYPTO_HASH_LEN + 1, m->u.auth.flags);
	if (vcrypto_verify(m->u.auth.sig, PEER_AUTH_DOMAIN, signed_msg, sizeof(signed_msg),
	                   m->u.auth.identity) != 0) {
		peer_close_error(p, WIRE_E_AUTH, "AUTH signature does not verify");
		return;
	}
	if ((m->u.auth.flags & WIRE_AUTH_SOURCE) &&
	    memcmp(m->u.auth.identity, p->ctx->source_key, WIRE_KEY_LEN) != 0) {
		peer_close_error(p, WIRE_E_AUTH,
		                 "peer claims to be the source but its key is not the source key");
		return;
	}
	memcpy(p->identity, m->u.auth.identity, WIRE_KEY_LEN);
	p->is_source = (m->u.auth.flags & WIRE_AUTH_SOURCE) != 0;
	peer_set_state(p, PEER_READY);
	event_del(p->handshake_ev);
	/* Authenticated: read whole frames now (netio_reader_consumed follows on_data). */
	netio_reader_set_high(&p->rd, PEER_IN_HIGH);
	log_debug("peer %s: authenticated%s", p->name, p->is_source ? " (source)" : "");
	if (p->ctx->ops->on_ready != NULL)
		p->ctx->ops->on_ready(p);
}

static void peer_handle_msg(struct peer *p, const struct wire_msg *m)
{
	switch (m->type) {
	case WIRE_AUTH:
		peer_close_error(p, WIRE_E_PROTOCOL, "unexpected second AUTH");
		return;
	case WIRE_ERROR: {
		char reason[WIRE_MAX_TEXT + 64], clean[WIRE_MAX_TEXT + 1];

		peer_clean_text(clean, sizeof(clean), m->u.error.text, m->u.error.text_len);
		snprintf(reason, sizeof(reason), "peer reported error %s: %s",
		         wire_code_name(m->u.error.code), clean);
		if (p->ctx->ops->on_error != NULL)
			p->ctx->ops->on_error(p, m);
		peer_close_fatal(p, code_is_fatal(m->u.error.code), reason);
		return;
	}
	case WIRE_KEEPALIVE:
		return;
	default:
		p->ctx->ops->on_msg(p, m);
	}
}

/* One frame is available in full: decrypt, decode, dispatch. */
static void peer_read_frame(struct peer *p, struct evbuffer *in, uint32_t ct_len)
{
	size_t total = WIRE_FRAME_HDR_LEN + ct_len;
	uint8_t *f = evbuffer_pullup(in, (ev_ssize_t)total);
	size_t plain_len = ct_len - WIRE_TAG_LEN;
	struct wire_msg m;

	if (f == NULL) {
		peer_close(p, "out of memory reading a frame");
		return;
	}
	if (vcrypto_open(p->rx_plain, f + WIRE_FRAME_HDR_LEN, ct_len, f, WIRE_FRAME_HDR_LEN,
	                 p->rx_ctr, p->rx_key) != 0) {
		evbuffer_drain(in, total);
		/* No ERROR is sent (PROTOCOL.md §5). In AUTH our own AUTH may still
		 * be queued: flush it, so that the peer learns of the wrong secret too. */
		if (p->state == PEER_AUTH)
			/* The only way a correct peer's first frame fails: other keys. */
			peer_close_flush(p, 1,
			                 "handshake failed: the peer does not know the volume's "
			                 "join secret (secret= in the URI is wrong)");
		else
			peer_close(p, "frame failed authentication (corrupt or forged)");
		return;
	}
	p->rx_ctr++;
	evbuffer_drain(in, total);
	if (wire_msg_decode(p->rx_plain, plain_len, &m) != 0) {
		peer_close_error(p, WIRE_E_PROTOCOL, "malformed message (type %u, %zu bytes)",
		                 plain_len > 0 ? p->rx_plain[0] : 0, plain_len);
		return;
	}
	if (m.type == WIRE_PIECE)
		p->bytes_in += m.u.piece.len;
	if (p->state == PEER_AUTH)
		peer_handle_auth(p, &m);
	else
		peer_handle_msg(p, &m);
}

static void peer_on_data(void *arg)
{
	struct peer *p = arg;
	struct evbuffer *in = p->rd.in;

	p->last_recv_ns = now_ns();
	peer_process_input(p, in);
	if (p->state != PEER_DEAD && p->rd.in != NULL)
		netio_reader_consumed(&p->rd);
}

/* Nothing moved for the timeout: tell the peer if keys are up, and close. */
static void peer_timed_out(struct peer *p, const char *what)
{
	char reason[160];

	snprintf(reason, sizeof(reason), "%s for %d s (in state %s)", what, p->ctx->timeout_s,
	         state_names[p->state]);
	if (p->state == PEER_READY || p->state == PEER_AUTH)
		peer_close_error(p, WIRE_E_TIMEOUT, "%s", reason);
	else
		peer_close(p, reason);
}

/* The socket ended: EOF, an error, or silence for the timeout. */
static void peer_on_end(void *arg, int err)
{
	struct peer *p = arg;
	char reason[160];

	if (p->state == PEER_CLOSING) {
		peer_finish_closing(p);
		return;
	}
	if (p->state == PEER_DEAD)
		return;
	if (err == ETIMEDOUT) {
		peer_timed_out(p, "peer silent");
		return;
	}
	if (err == 0)
		snprintf(reason, sizeof(reason), "connection closed by peer (in state %s)",
		         state_names[p->state]);
	else
		snprintf(reason, sizeof(reason), "%s", strerror(err));
	peer_close(p, reason);
}

/* Process every complete record or frame in the input; then time the partial one. */
static void peer_process_input(struct peer *p, struct evbuffer *in)
{
	while (!p->read_paused) {
		uint8_t hdr[WIRE_FRAME_HDR_LEN];
		int64_t ct_len;

		if (p->state == PEER_HELLO) {
			if (!peer_read_hello(p, in))
				return;
			continue;
		}
		if (p->state != PEER_AUTH && p->state != PEER_READY)
			return;
		if (evbuffer_get_length(in) < WIRE_FRAME_HDR_LEN)
			break;
		evbuffer_copyout(in, hdr, sizeof(hdr));
		ct_len = wire_frame_len(hdr);
		if (ct_len < 0) {
			peer_close_error(p, WIRE_E_PROTOCOL, "invalid frame length %u",
			                 wire_get32(hdr));
			return;
		}
		/* Before authentication nothing but the AUTH frame is buffered. */
		if (p->state == PEER_AUTH && ct_len != PEER_AUTH_CT_LEN) {
			peer_close_error(p, WIRE_E_PROTOCOL,
			                 "the first frame is %lld bytes, not an AUTH (%u)",
			                 (long long)ct_len, PEER_AUTH_CT_LEN);
			return;
		}
		if (evbuffer_get_length(in) < WIRE_FRAME_HDR_LEN + (size_t)ct_len)
			break;
		peer_read_frame(p, in, (uint32_t)ct_len);
		p->frame_start_ns = 0; /* the next frame's clock starts when it shows */
	}
	peer_frame_clock(p);
}

static void peer_write_cb(struct bufferevent *bev, void *arg)
{
	struct peer *p = arg;

	(void)bev;
	if (p->state == PEER_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(p->bev)) == 0)
			peer_finish_closing(p);
		return;
	}
	if (p->state == PEER_READY && p->ctx->ops->on_drain != NULL)
		p->ctx->ops->on_drain(p);
}

static void peer_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct peer *p = arg;
	char reason[160];

	if (what & BEV_EVENT_CONNECTED) {
		peer_set_sockopts(p);
		peer_set_state(p, PEER_HELLO);
		if (peer_start_reading(p) != 0) {
			peer_close(p, "out of memory");
			return;
		}
		peer_send_hello(p);
		return;
	}
	if (p->state == PEER_CLOSING) {
		peer_finish_closing(p);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		peer_timed_out(p, "peer took no data");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		snprintf(reason, sizeof(reason), "connection closed by peer (in state %s)",
		         state_names[p->state]);
	} else {
		int dns_err = bufferevent_socket_get_dns_error(bev);

		if (dns_err != 0)
			snprintf(reason, sizeof(reason), "cannot resolve: %s",
			         evutil_gai_strerror(dns_err));
		else
			snprintf(reason, sizeof(reason), "%s",
			         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
	peer_close(p, reason);
}

const char *peer_name(const struct peer *p)
{
	return p->name;
}

int peer_is_ready(const struct peer *p)
{
	return p->state == PEER_READY;
}

int peer_hello_done(const struct peer *p)
{
	return p->state == PEER_AUTH || p->state == PEER_READY;
}

int peer_is_dead(const struct peer *p)
{
	return p->state == PEER_DEAD;
}

int peer_is_source(const struct peer *p)
{
	return p->is_source;
}

int peer_initiator(const struct peer *p)
{
	return p->initiator;
}

const uint8_t *peer_identity(const struct peer *p)
{
	return p->identity;
}

uint64_t peer_bytes_in(const struct peer *p)
{
	return p->bytes_in;
}

uint64_t peer_bytes_out(const struct peer *p)
{
	return p->bytes_out;
}

void *peer_owner(const struct peer *p)
{
	return p->owner;
}

void peer_set_owner(struct peer *p, void *owner)
{
	p->owner = owner;
}
