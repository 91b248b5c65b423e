/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for p2pvbd/peer.c: the handshake (hellos, refusals, session
 * keys, AUTH) and the encrypted framing, over a socketpair with a fresh
 * event base per test.
 *
 * Most tests run two real peers against each other. Tests that must put
 * bytes on the wire that a correct peer never sends use a "manual peer": a
 * few lines in this file that do the initiator's side of the handshake with
 * the codec and vcrypto directly, over the raw socket, between turns of the
 * event loop.
 *
 * The loop is only ever run with EVLOOP_NONBLOCK under a deadline, so no
 * test can hang.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "peer_int.h" /* the tests look inside */
#include "util.h"
#include "vcrypto.h"
#include "wire.h"

#define AUTH_DOMAIN "p2pvbd-auth-v1" /* PROTOCOL.md §4.5 */
#define PIECE_LEN   (200u * 1024u)
#define MAX_MSGS    16

/* What one end's callbacks saw. */
struct side {
	struct peer_ctx ctx;
	struct peer_ops ops;
	struct vcrypto_identity id;
	struct peer *p; /* NULL once on_close has run: the peer is freed soon after */

	int ready;
	uint8_t peer_identity[WIRE_KEY_LEN]; /* copied in on_ready */
	int peer_is_source;

	int nmsg;
	uint8_t types[MAX_MSGS];
	uint32_t have_chunk;
	uint64_t have_gen;
	uint8_t *piece; /* copy of the last PIECE's data, ours to free */
	uint32_t piece_len, piece_chunk, piece_offset;
	uint64_t piece_gen;

	int nerrors; /* on_error calls; the last ERROR's fields: */
	uint16_t err_code;
	int err_has_chunk, err_closed_before; /* on_close had run when on_error ran */
	uint32_t err_chunk;
	uint64_t err_gen;

	int closed; /* on_close calls */
	int fatal;
	char reason[WIRE_MAX_TEXT + 128];
};

static struct event_base *base;
static struct side A, B; /* A is the initiator, B the acceptor */
static int sv[2] = {-1, -1};
static struct vcrypto_identity src_id; /* the volume's source */
static uint8_t vol_id[WIRE_ID_LEN], secret[32];

static uint64_t ms_now(void)
{
	return now_ns() / 1000000u;
}

static void turn(void)
{
	struct timespec ts = {0, 200 * 1000};

	event_base_loop(base, EVLOOP_NONBLOCK);
	nanosleep(&ts, NULL);
}

/* Turn the loop until cond holds or ms have passed; the caller asserts cond. */
#define RUN_UNTIL(cond, ms)                                                                        \
	do {                                                                                       \
		uint64_t dl_ = ms_now() + (ms);                                                    \
		while (!(cond) && ms_now() < dl_)                                                  \
			turn();                                                                    \
	} while (0)

static void run_for(unsigned ms)
{
	uint64_t dl = ms_now() + ms;

	while (ms_now() < dl)
		turn();
}

static void on_ready(struct peer *p)
{
	struct side *s = p->owner;

	s->ready++;
	memcpy(s->peer_identity, p->identity, WIRE_KEY_LEN);
	s->peer_is_source = p->is_source;
}

static void on_msg(struct peer *p, const struct wire_msg *m)
{
	struct side *s = p->owner;

	if (s->nmsg < MAX_MSGS)
		s->types[s->nmsg] = m->type;
	s->nmsg++;
	if (m->type == WIRE_HAVE) {
		s->have_chunk = m->u.have.chunk;
		s->have_gen = m->u.have.gen;
	} else if (m->type == WIRE_PIECE) {
		free(s->piece);
		s->piece = xmalloc(m->u.piece.len);
		memcpy(s->piece, m->u.piece.data, m->u.piece.len);
		s->piece_len = m->u.piece.len;
		s->piece_chunk = m->u.piece.chunk;
		s->piece_gen = m->u.piece.gen;
		s->piece_offset = m->u.piece.offset;
	}
}

static void on_close(struct peer *p, int fatal_err, const char *reason)
{
	struct side *s = p->owner;

	s->closed++;
	s->fatal = fatal_err;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	s->p = NULL;
}

static void on_error(struct peer *p, const struct wire_msg *m)
{
	struct side *s = p->owner;

	s->nerrors++;
	s->err_code = m->u.error.code;
	s->err_has_chunk = m->u.error.has_chunk;
	s->err_chunk = m->u.error.chunk;
	s->err_gen = m->u.error.gen;
	s->err_closed_before = s->closed;
}

static void side_init(struct side *s)
{
	memset(s, 0, sizeof(*s));
	s->ops.on_ready = on_ready;
	s->ops.on_msg = on_msg;
	s->ops.on_close = on_close;
	s->ops.on_error = on_error;
	vcrypto_identity_generate(&s->id);
	s->ctx.base = base;
	s->ctx.dns = NULL;
	s->ctx.ops = &s->ops;
	memcpy(s->ctx.volume_id, vol_id, WIRE_ID_LEN);
	memcpy(s->ctx.source_key, src_id.pk, WIRE_KEY_LEN);
	memcpy(s->ctx.join_secret, secret, sizeof(secret));
	s->ctx.identity = &s->id;
	s->ctx.timeout_s = 2;
}

/* Make s the volume's source: its identity is the source key. */
static void side_make_source(struct side *s)
{
	s->id = src_id;
	s->ctx.is_source = 1;
}

static void setup(void)
{
	cr_assert_eq(vcrypto_init(), 0);
	/* Failures are expected here; keep their log lines out of the output. */
	log_init("test", -1);
	/* A peer may write to a socket whose other end is already closed. */
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	cr_assert_not_null(base);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	vcrypto_identity_generate(&src_id);
	vcrypto_random(vol_id, sizeof(vol_id));
	vcrypto_random(secret, sizeof(secret));
	side_init(&A);
	side_init(&B);
}

static void teardown(void)
{
	struct side *sides[] = {&A, &B};

	for (size_t i = 0; i < ARRAY_LEN(sides); i++)
		if (sides[i]->p != NULL)
			peer_close(sides[i]->p, "test over");
	/* Let deferred frees (and CLOSING flushes) run. */
	run_for(30);
	for (size_t i = 0; i < ARRAY_LEN(sides); i++)
		free(sides[i]->piece);
	for (int i = 0; i < 2; i++)
		if (sv[i] >= 0)
			close(sv[i]);
	event_base_free(base);
}

TestSuite(peer, .init = setup, .fini = teardown);

/* Hand both ends of the socketpair to two peers: A initiator, B acceptor. */
static void start_pair(void)
{
	A.p = peer_start(&A.ctx, sv[0], 1, "A", &A);
	B.p = peer_start(&B.ctx, sv[1], 0, "B", &B);
	sv[0] = sv[1] = -1; /* the peers own them now */
	cr_assert_not_null(A.p);
	cr_assert_not_null(B.p);
}

/* Only B is a real peer; sv[0] stays raw for the test to write. */
static void start_acceptor(void)
{
	B.p = peer_start(&B.ctx, sv[1], 0, "B", &B);
	sv[1] = -1;
	cr_assert_not_null(B.p);
}

static void fill_pattern(uint8_t *dst, size_t len, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		dst[i] = (uint8_t)((off + i) * 131u + ((off + i) >> 8));
}

static int fill_cb(void *arg, uint8_t *dst, size_t len, uint64_t off)
{
	int *calls = arg;

	(*calls)++;
	fill_pattern(dst, len, off);
	return 0;
}

/* 1. Matching volume, source key and secret. */
Test(peer, handshake_and_messages)
{
	struct wire_msg have = {.type = WIRE_HAVE};
	uint8_t *expect;
	int fill_calls = 0;

	side_make_source(&A);
	start_pair();
	cr_assert_eq(peer_send(A.p, &have), -1, "peer_send before READY must fail");

	RUN_UNTIL(A.ready && B.ready, 3000);
	cr_assert_eq(A.ready, 1);
	cr_assert_eq(B.ready, 1);
	cr_assert_eq(A.closed + B.closed, 0, "closed: A '%s' B '%s'", A.reason, B.reason);
	cr_assert_eq(A.p->state, PEER_READY);
	cr_assert_eq(B.p->state, PEER_READY);
	cr_assert_arr_eq(A.peer_identity, B.id.pk, WIRE_KEY_LEN);
	cr_assert_arr_eq(B.peer_identity, A.id.pk, WIRE_KEY_LEN);
	cr_assert_arr_eq(B.peer_identity, src_id.pk, WIRE_KEY_LEN);
	cr_assert_eq(B.peer_is_source, 1, "B must see the source A as the source");
	cr_assert_eq(A.peer_is_source, 0, "A must not see B as the source");

	have.u.have.chunk = 0x01020304u;
	have.u.have.gen = 0x1122334455667788ull;
	cr_assert_eq(peer_send(A.p, &have), 0);
	cr_assert_eq(peer_send_piece(A.p, 77, 5, 4096, PIECE_LEN, fill_cb, &fill_calls, 1000), 0);
	cr_assert_eq(fill_calls, 1);
	cr_assert_eq(peer_send_piece(A.p, 1, 1, 0, WIRE_MAX_BLOCK + 1, fill_cb, &fill_calls, 0), -1,
	             "a piece above WIRE_MAX_BLOCK must be refused");

	RUN_UNTIL(B.nmsg >= 2, 3000);
	cr_assert_eq(B.nmsg, 2);
	cr_assert_eq(B.types[0], WIRE_HAVE);
	cr_assert_eq(B.types[1], WIRE_PIECE);
	cr_assert_eq(B.have_chunk, 0x01020304u);
	cr_assert_eq(B.have_gen, 0x1122334455667788ull);
	cr_assert_eq(B.piece_chunk, 77);
	cr_assert_eq(B.piece_gen, 5);
	cr_assert_eq(B.piece_offset, 4096);
	cr_assert_eq(B.piece_len, PIECE_LEN);
	expect = xmalloc(PIECE_LEN);
	fill_pattern(expect, PIECE_LEN, 1000);
	cr_assert_arr_eq(B.piece, expect, PIECE_LEN, "piece data differs");
	free(expect);
	cr_assert_eq(B.p->bytes_in, PIECE_LEN);
	cr_assert_eq(A.p->bytes_out, PIECE_LEN);
	cr_assert_eq(A.nmsg, 0);

	peer_close(A.p, "test closes A");
	cr_assert_eq(A.closed, 1, "on_close must follow peer_close synchronously");
	cr_assert_eq(A.fatal, 0);
	cr_assert_str_eq(A.reason, "test closes A");
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1);
	cr_assert_eq(B.fatal, 0);
	cr_assert_not_null(strstr(B.reason, "closed by peer"), "B's reason: %s", B.reason);
	run_for(20);
	cr_assert_eq(A.closed, 1, "on_close must be called exactly once");
	cr_assert_eq(B.closed, 1, "on_close must be called exactly once");
}

/* 2. Different join secrets: the first frame does not decrypt. */
Test(peer, wrong_join_secret)
{
	B.ctx.join_secret[0] ^= 1;
	start_pair();
	RUN_UNTIL(A.closed && B.closed, 3000);
	cr_assert_eq(A.closed, 1);
	cr_assert_eq(B.closed, 1);
	cr_assert_eq(A.ready + B.ready, 0);
	cr_assert_eq(A.fatal, 1, "A's reason: %s", A.reason);
	cr_assert_not_null(strstr(A.reason, "secret"), "A's reason: %s", A.reason);
	/* A flushed its AUTH before closing, so B learns of the wrong secret too. */
	cr_assert_eq(B.fatal, 1, "B's reason: %s", B.reason);
	cr_assert_not_null(strstr(B.reason, "secret"), "B's reason: %s", B.reason);
}

/* Cases 3 and 4: the acceptor refuses the initiator's hello with code. */
static void expect_refusal(uint16_t code)
{
	start_pair();
	RUN_UNTIL(A.closed && B.closed, 3000);
	cr_assert_eq(A.closed, 1);
	cr_assert_eq(A.fatal, 1, "A's reason: %s", A.reason);
	cr_assert_not_null(strstr(A.reason, "refused"), "A's reason: %s", A.reason);
	cr_assert_not_null(strstr(A.reason, wire_code_name(code)), "A's reason: %s", A.reason);
	cr_assert_eq(B.closed, 1, "the acceptor must close after refusing");
	run_for(50);
	cr_assert_eq(A.ready + B.ready, 0);
}

/* 3. The initiator trusts another source key. */
Test(peer, wrong_source_key)
{
	A.ctx.source_key[5] ^= 0x80;
	expect_refusal(WIRE_E_WRONG_KEY);
	cr_assert_not_null(strstr(A.reason, "source key"), "A's reason: %s", A.reason);
}

/* 4. The initiator asks for another volume. */
Test(peer, wrong_volume)
{
	A.ctx.volume_id[WIRE_ID_LEN - 1] ^= 1;
	expect_refusal(WIRE_E_WRONG_VOLUME);
	cr_assert_not_null(strstr(A.reason, "volume"), "A's reason: %s", A.reason);
}

/* 5. liar claims to be the source with a key that is not the source key. */
static void expect_false_source_rejected(struct side *liar, struct side *judge)
{
	liar->ctx.is_source = 1; /* its identity stays a random key */
	start_pair();
	RUN_UNTIL(judge->closed && liar->closed, 3000);
	cr_assert_eq(judge->closed, 1);
	cr_assert_eq(judge->ready, 0, "the false source must not be accepted");
	cr_assert_not_null(strstr(judge->reason, "source key"), "reason: %s", judge->reason);
	cr_assert_eq(judge->fatal, 1);
	/* The liar is told why (ERROR E_AUTH, PROTOCOL.md §4.5). */
	cr_assert_eq(liar->closed, 1);
	cr_assert_eq(liar->fatal, 1, "liar's reason: %s", liar->reason);
	cr_assert_not_null(strstr(liar->reason, wire_code_name(WIRE_E_AUTH)), "liar's reason: %s",
	                   liar->reason);
	cr_assert_not_null(strstr(liar->reason, "source key"), "liar's reason: %s", liar->reason);
}

Test(peer, false_source_initiator)
{
	expect_false_source_rejected(&A, &B);
}

Test(peer, false_source_acceptor)
{
	expect_false_source_rejected(&B, &A);
}

/* Raw socket helpers for the tests that play one side by hand. */

static void raw_write(int fd, const void *buf, size_t len)
{
	const uint8_t *b = buf;

	while (len > 0) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		b += n;
		len -= (size_t)n;
	}
}

/*
 * Read exactly len bytes, turning the event loop while waiting. Returns 0,
 * 1 on EOF (even partway) or -1 on timeout.
 */
static int raw_read(int fd, void *buf, size_t len, unsigned ms)
{
	uint8_t *b = buf;
	size_t got = 0;
	uint64_t dl = ms_now() + ms;

	while (got < len) {
		ssize_t n = recv(fd, b + got, len - got, MSG_DONTWAIT);

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0)
			return 1;
		cr_assert(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
		              errno == ECONNRESET,
		          "recv: %s", strerror(errno));
		if (errno == ECONNRESET)
			return 1;
		if (ms_now() >= dl)
			return -1;
		turn();
	}
	return 0;
}

/* The initiator's side of the protocol, done by hand. */
struct manual {
	int fd;
	struct vcrypto_identity id;
	struct vcrypto_kx kx;
	uint8_t hello_mine[WIRE_HELLO_LEN], hello_theirs[WIRE_HELLO_LEN];
	uint8_t transcript[VCRYPTO_HASH_LEN];
	uint8_t rx[VCRYPTO_KEY_LEN], tx[VCRYPTO_KEY_LEN];
	uint64_t rx_ctr, tx_ctr;
	uint8_t plain[WIRE_MAX_MSG + WIRE_TAG_LEN];
};

static struct manual mp;

/* Seal plain into one frame and send it; corrupt flips one ciphertext bit. */
static void manual_send_frame(const uint8_t *plain, size_t len, int corrupt)
{
	size_t total = WIRE_FRAME_HDR_LEN + len + WIRE_TAG_LEN;
	uint8_t *f = xmalloc(total);

	wire_put32(f, (uint32_t)(len + WIRE_TAG_LEN));
	vcrypto_seal(f + WIRE_FRAME_HDR_LEN, plain, len, f, WIRE_FRAME_HDR_LEN, mp.tx_ctr++, mp.tx);
	if (corrupt)
		f[WIRE_FRAME_HDR_LEN + len / 2] ^= 0x40;
	raw_write(mp.fd, f, total);
	free(f);
}

static void manual_send_msg(const struct wire_msg *m)
{
	uint8_t buf[1024];
	size_t n = wire_msg_encode(m, buf, sizeof(buf));

	cr_assert_gt(n, 0);
	manual_send_frame(buf, n, 0);
}

/* Read and decrypt one frame into mp.plain. 0, 1 on EOF, -1 on timeout. */
static int manual_read_frame(struct wire_msg *m, unsigned ms)
{
	uint8_t hdr[WIRE_FRAME_HDR_LEN];
	uint8_t *ct;
	int64_t ct_len;
	int r = raw_read(mp.fd, hdr, sizeof(hdr), ms);

	if (r != 0)
		return r;
	ct_len = wire_frame_len(hdr);
	cr_assert_geq(ct_len, 0, "peer sent an invalid frame length");
	ct = xmalloc((size_t)ct_len);
	r = raw_read(mp.fd, ct, (size_t)ct_len, ms);
	if (r == 0) {
		cr_assert_eq(vcrypto_open(mp.plain, ct, (size_t)ct_len, hdr, sizeof(hdr),
		                          mp.rx_ctr++, mp.rx),
		             0, "frame from the peer does not decrypt");
		cr_assert_eq(wire_msg_decode(mp.plain, (size_t)ct_len - WIRE_TAG_LEN, m), 0,
		             "peer sent a malformed message");
	}
	free(ct);
	return r;
}

/*
 * Read frames until the peer closes. Returns the code of the ERROR it sent
 * before closing, or -1 if it sent none. Keepalives are skipped.
 */
static int manual_read_until_eof(void)
{
	int code = -1;
	struct wire_msg m;
	int r;

	while ((r = manual_read_frame(&m, 4000)) == 0) {
		cr_assert(m.type == WIRE_KEEPALIVE || m.type == WIRE_ERROR,
		          "unexpected %s from a closing peer", wire_type_name(m.type));
		if (m.type == WIRE_ERROR)
			code = m.u.error.code;
	}
	cr_assert_eq(r, 1, "the peer did not close its connection");
	return code;
}

/* Run the initiator's handshake by hand against the real acceptor B. */
static void manual_handshake(void)
{
	struct wire_hello h, theirs;
	struct vcrypto_hash_state st;
	struct wire_msg auth = {.type = WIRE_AUTH}, m;
	uint8_t signed_msg[VCRYPTO_HASH_LEN + 1 + 4];

	memset(&mp, 0, sizeof(mp));
	mp.fd = sv[0];
	vcrypto_identity_generate(&mp.id);
	vcrypto_kx_generate(&mp.kx);
	start_acceptor();

	memset(&h, 0, sizeof(h));
	h.min_version = WIRE_VERSION;
	h.max_version = WIRE_VERSION;
	memcpy(h.volume_id, vol_id, WIRE_ID_LEN);
	memcpy(h.source_key, src_id.pk, WIRE_KEY_LEN);
	memcpy(h.kx_key, mp.kx.pk, WIRE_KEY_LEN);
	wire_hello_encode(&h, mp.hello_mine);
	raw_write(mp.fd, mp.hello_mine, WIRE_HELLO_LEN);

	cr_assert_eq(raw_read(mp.fd, mp.hello_theirs, WIRE_HELLO_LEN, 3000), 0,
	             "no hello from the acceptor (closed: '%s')", B.reason);
	cr_assert_eq(wire_hello_decode(mp.hello_theirs, WIRE_HELLO_LEN, &theirs), 0);
	cr_assert_arr_eq(theirs.volume_id, vol_id, WIRE_ID_LEN);
	cr_assert_arr_eq(theirs.source_key, src_id.pk, WIRE_KEY_LEN);

	vcrypto_hash_init(&st);
	vcrypto_hash_update(&st, mp.hello_mine, WIRE_HELLO_LEN);
	vcrypto_hash_update(&st, mp.hello_theirs, WIRE_HELLO_LEN);
	vcrypto_hash_final(&st, mp.transcript);
	cr_assert_eq(
	    vcrypto_session_keys(mp.rx, mp.tx, &mp.kx, theirs.kx_key, 1, mp.transcript, secret), 0);

	/* Our AUTH: initiator role 0, no flags. */
	memcpy(signed_msg, mp.transcript, VCRYPTO_HASH_LEN);
	signed_msg[VCRYPTO_HASH_LEN] = 0;
	wire_put32(signed_msg + VCRYPTO_HASH_LEN + 1, 0);
	memcpy(auth.u.auth.identity, mp.id.pk, WIRE_KEY_LEN);
	auth.u.auth.flags = 0;
	vcrypto_sign(auth.u.auth.sig, AUTH_DOMAIN, signed_msg, sizeof(signed_msg), mp.id.sk);
	manual_send_msg(&auth);

	/* The acceptor's AUTH must be its first frame and verify for role 1. */
	cr_assert_eq(manual_read_frame(&m, 3000), 0, "no AUTH from the acceptor");
	cr_assert_eq(m.type, WIRE_AUTH, "first frame is %s", wire_type_name(m.type));
	cr_assert_arr_eq(m.u.auth.identity, B.id.pk, WIRE_KEY_LEN);
	cr_assert_eq(m.u.auth.flags, 0);
	signed_msg[VCRYPTO_HASH_LEN] = 1;
	cr_assert_eq(
	    vcrypto_verify(m.u.auth.sig, AUTH_DOMAIN, signed_msg, sizeof(signed_msg), B.id.pk), 0,
	    "the acceptor's AUTH signature does not verify as PROTOCOL.md says");

	RUN_UNTIL(B.ready || B.closed, 3000);
	cr_assert_eq(B.ready, 1, "acceptor not READY (closed: '%s')", B.reason);
	cr_assert_arr_eq(B.peer_identity, mp.id.pk, WIRE_KEY_LEN);
	cr_assert_eq(B.peer_is_source, 0);

	/* The session works before we break it: one HAVE gets through. */
	m = (struct wire_msg){.type = WIRE_HAVE};
	m.u.have.chunk = 9;
	m.u.have.gen = 2;
	manual_send_msg(&m);
	RUN_UNTIL(B.nmsg >= 1 || B.closed, 3000);
	cr_assert_eq(B.nmsg, 1);
	cr_assert_eq(B.types[0], WIRE_HAVE);
	cr_assert_eq(B.have_chunk, 9);
}

/* 6. Garbage instead of a hello. */
Test(peer, garbage_hello)
{
	uint8_t junk[WIRE_HELLO_LEN], rec[WIRE_MAGIC_LEN + 4 + WIRE_MAX_TEXT];
	uint16_t code, text_len;
	const char *text;
	size_t got = 0;
	int r;

	start_acceptor();
	vcrypto_random(junk, sizeof(junk));
	junk[0] = (uint8_t)(junk[0] == 'P' ? 'Q' : junk[0]); /* never the magic by chance */
	raw_write(sv[0], junk, sizeof(junk));

	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1);
	cr_assert_eq(B.ready, 0);
	cr_assert_not_null(strstr(B.reason, "magic"), "B's reason: %s", B.reason);

	/* It answers with a REFUSAL E_PROTOCOL (PROTOCOL.md §4.3), then closes. */
	for (;;) {
		ssize_t n = recv(sv[0], rec + got, sizeof(rec) - got, MSG_DONTWAIT);

		if (n > 0)
			got += (size_t)n;
		r = wire_refuse_decode(rec, got, &code, &text, &text_len);
		if (r != WIRE_NEED_MORE || n == 0)
			break;
		cr_assert(n > 0 || errno == EAGAIN, "recv: %s", strerror(errno));
		turn();
	}
	cr_assert_gt(r, 0, "no valid refusal (%zu bytes)", got);
	cr_assert_eq(code, WIRE_E_PROTOCOL);
	cr_assert_eq(raw_read(sv[0], rec, 1, 3000), 1, "the acceptor did not close");
}

/* 7a. A frame header announcing far more than WIRE_MAX_MSG. */
Test(peer, oversized_frame)
{
	uint8_t hdr[WIRE_FRAME_HDR_LEN];

	manual_handshake();
	wire_put32(hdr, 0xFFFFFFF0u);
	raw_write(mp.fd, hdr, sizeof(hdr));
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1);
	cr_assert_not_null(strstr(B.reason, "frame length"), "B's reason: %s", B.reason);
	cr_assert_not_null(strstr(B.reason, "4294967280"), "B's reason: %s", B.reason);
	manual_read_until_eof();
}

/* 7b. A corrupted frame after READY. */
Test(peer, corrupt_frame)
{
	struct wire_msg m = {.type = WIRE_HAVE};
	uint8_t buf[64];
	size_t n;

	manual_handshake();
	m.u.have.chunk = 10;
	n = wire_msg_encode(&m, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	manual_send_frame(buf, n, 1);
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1);
	cr_assert_eq(B.nmsg, 1, "the corrupt HAVE must not be delivered");
	cr_assert_not_null(strstr(B.reason, "authentication"), "B's reason: %s", B.reason);
	/* PROTOCOL.md §5: no ERROR is sent for a frame that fails to decrypt. */
	cr_assert_eq(manual_read_until_eof(), -1, "an ERROR was sent after a forged frame");
}

/* 7c. A well-sealed frame holding a message of unknown type. */
Test(peer, malformed_message)
{
	uint8_t bad[3] = {99, 1, 2};

	manual_handshake();
	manual_send_frame(bad, sizeof(bad), 0);
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1);
	cr_assert_eq(B.nmsg, 1, "the malformed message must not be delivered");
	cr_assert_not_null(strstr(B.reason, "malformed"), "B's reason: %s", B.reason);
	/* PROTOCOL.md §6: answered with ERROR E_PROTOCOL. */
	cr_assert_eq(manual_read_until_eof(), WIRE_E_PROTOCOL);
}

/* 7d. Two bytes of a frame header, then silence. */
Test(peer, stalled_frame)
{
	uint8_t hdr[2] = {0, 0};
	uint64_t t0;

	B.ctx.timeout_s = 1;
	manual_handshake();
	raw_write(mp.fd, hdr, sizeof(hdr));
	t0 = ms_now();
	RUN_UNTIL(B.closed, 4000);
	cr_assert_eq(B.closed, 1);
	cr_assert_geq(ms_now() - t0, 900, "closed before the timeout");
	cr_assert_not_null(strstr(B.reason, "silent"), "B's reason: %s", B.reason);
	cr_assert_eq(B.nmsg, 1);
	/* PROTOCOL.md §7.8: ERROR E_TIMEOUT, best effort. */
	cr_assert_eq(manual_read_until_eof(), WIRE_E_TIMEOUT);
}

/* 8. peer_close_error after READY reaches the other side. */
Test(peer, close_error_after_ready)
{
	start_pair();
	RUN_UNTIL(A.ready && B.ready, 3000);
	cr_assert_eq(A.ready + B.ready, 2, "A '%s' B '%s'", A.reason, B.reason);

	peer_close_error(B.p, WIRE_E_BUSY, "too many peers (%d)", 42);
	cr_assert_eq(B.closed, 1, "on_close must follow peer_close_error at once");
	cr_assert_eq(B.fatal, 0);
	cr_assert_str_eq(B.reason, "too many peers (42)");
	RUN_UNTIL(A.closed, 3000);
	cr_assert_eq(A.closed, 1);
	cr_assert_eq(A.fatal, 0, "E_BUSY is not fatal");
	cr_assert_not_null(strstr(A.reason, wire_code_name(WIRE_E_BUSY)), "A's reason: %s",
	                   A.reason);
	cr_assert_not_null(strstr(A.reason, "too many peers (42)"), "A's reason: %s", A.reason);
}

/* 8a. An ERROR naming a bad chunk reaches the other side's on_error, then on_close. */
Test(peer, close_bad_chunk_names_the_chunk)
{
	start_pair();
	RUN_UNTIL(A.ready && B.ready, 3000);
	cr_assert_eq(A.ready + B.ready, 2, "A '%s' B '%s'", A.reason, B.reason);

	peer_close_bad_chunk(A.p, 0x01020304, 0x0a0b0c0d0e0f1011ull, "chunk %u failed", 7);
	cr_assert_eq(A.closed, 1);
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.nerrors, 1);
	cr_assert_eq(B.err_closed_before, 0, "on_error must come before on_close");
	cr_assert_eq(B.err_code, WIRE_E_BAD_DATA);
	cr_assert_eq(B.err_has_chunk, 1);
	cr_assert_eq(B.err_chunk, 0x01020304u);
	cr_assert_eq(B.err_gen, 0x0a0b0c0d0e0f1011ull);
	cr_assert_not_null(strstr(B.reason, "E_BAD_DATA: chunk 7 failed"), "B's reason: %s",
	                   B.reason);
	cr_assert_eq(A.nerrors, 0);
}

/* 8c. A plain ERROR reaches on_error too, without a chunk. */
Test(peer, close_error_reaches_on_error)
{
	start_pair();
	RUN_UNTIL(A.ready && B.ready, 3000);
	peer_close_error(A.p, WIRE_E_BAD_DATA, "page 3 does not verify");
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.nerrors, 1);
	cr_assert_eq(B.err_code, WIRE_E_BAD_DATA);
	cr_assert_eq(B.err_has_chunk, 0);
}

/* 8b. A fatal code is reported as fatal on the other side. */
Test(peer, close_error_fatal_code)
{
	start_pair();
	RUN_UNTIL(A.ready && B.ready, 3000);
	cr_assert_eq(A.ready + B.ready, 2, "A '%s' B '%s'", A.reason, B.reason);

	peer_close_error(A.p, WIRE_E_WRONG_VOLUME, "volume retired");
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1);
	cr_assert_eq(B.fatal, 1, "B's reason: %s", B.reason);
	cr_assert_not_null(strstr(B.reason, "E_WRONG_VOLUME: volume retired"), "B's reason: %s",
	                   B.reason);
}

/*
 * 9. Limits before authentication (DESIGN.md rule 9, PROTOCOL.md §4.6): one
 * deadline for the whole handshake, not a timeout that each byte restarts.
 * A HELLO sent a byte every 250 ms never lets the 1 s silence timeout fire;
 * the handshake's deadline (the timeout, 1 s, being below
 * PEER_HANDSHAKE_MAX_S) drops it long before the 96 bytes are in.
 */
Test(peer, handshake_deadline_not_per_byte)
{
	struct wire_hello h;
	uint8_t hello[WIRE_HELLO_LEN];
	struct vcrypto_kx kx;
	size_t sent = 0;
	uint64_t dl;

	B.ctx.timeout_s = 1;
	cr_assert_eq(peer_handshake_s(&B.ctx), 1);
	start_acceptor();
	memset(&h, 0, sizeof(h));
	h.min_version = h.max_version = WIRE_VERSION;
	memcpy(h.volume_id, vol_id, WIRE_ID_LEN);
	memcpy(h.source_key, src_id.pk, WIRE_KEY_LEN);
	vcrypto_kx_generate(&kx);
	memcpy(h.kx_key, kx.pk, WIRE_KEY_LEN);
	wire_hello_encode(&h, hello);
	/* A stranger's connection holds no session scratch. */
	cr_assert_null(B.p->rx_plain);
	cr_assert_null(B.p->tx_plain);
	dl = ms_now() + 8000; /* 32 bytes at most: a third of the HELLO */
	while (!B.closed && sent < WIRE_HELLO_LEN && ms_now() < dl) {
		raw_write(sv[0], hello + sent, 1);
		sent++;
		run_for(250);
	}
	cr_assert_eq(B.closed, 1, "a HELLO trickled in for %zu bytes was not dropped", sent);
	cr_assert_lt(sent, WIRE_HELLO_LEN);
	cr_assert_not_null(strstr(B.reason, "handshake not done within 1 s"), "B's reason: %s",
	                   B.reason);
	cr_assert_eq(B.ctx.handshakes_late, 1);
	cr_assert_eq(B.ready, 0);
}

/* 9a. Before AUTH, a frame of any other length than an AUTH's is refused at once. */
Test(peer, first_frame_must_be_auth_sized)
{
	struct wire_hello h;
	uint8_t hello[WIRE_HELLO_LEN], theirs[WIRE_HELLO_LEN], hdr[WIRE_FRAME_HDR_LEN];
	struct vcrypto_kx kx;

	start_acceptor();
	memset(&h, 0, sizeof(h));
	h.min_version = h.max_version = WIRE_VERSION;
	memcpy(h.volume_id, vol_id, WIRE_ID_LEN);
	memcpy(h.source_key, src_id.pk, WIRE_KEY_LEN);
	vcrypto_kx_generate(&kx);
	memcpy(h.kx_key, kx.pk, WIRE_KEY_LEN);
	wire_hello_encode(&h, hello);
	raw_write(sv[0], hello, sizeof(hello));
	cr_assert_eq(raw_read(sv[0], theirs, sizeof(theirs), 3000), 0, "no hello from B");
	/* The largest frame there is, announced but not sent: B must not wait for it. */
	wire_put32(hdr, WIRE_MAX_MSG + WIRE_TAG_LEN);
	raw_write(sv[0], hdr, sizeof(hdr));
	RUN_UNTIL(B.closed, 3000);
	cr_assert_eq(B.closed, 1, "B waits for a 1 MiB frame from a stranger");
	cr_assert_not_null(strstr(B.reason, "not an AUTH"), "B's reason: %s", B.reason);
	cr_assert_eq(B.ready, 0);
}

/*
 * 9b. After authentication, a frame whose bytes trickle in (each just before
 * the silence timeout) is dropped once the timeout plus its length at
 * PEER_FRAME_MIN_RATE has passed since its first byte.
 */
Test(peer, frame_deadline_not_per_byte)
{
	struct wire_msg m = {.type = WIRE_HAVE};
	uint8_t plain[64], *f;
	size_t n, total, sent = 0;
	uint64_t dl;

	B.ctx.timeout_s = 1;
	manual_handshake();
	m.u.have.chunk = 11;
	n = wire_msg_encode(&m, plain, sizeof(plain));
	cr_assert_gt(n, 0);
	total = WIRE_FRAME_HDR_LEN + n + WIRE_TAG_LEN;
	f = xmalloc(total);
	wire_put32(f, (uint32_t)(n + WIRE_TAG_LEN));
	vcrypto_seal(f + WIRE_FRAME_HDR_LEN, plain, n, f, WIRE_FRAME_HDR_LEN, mp.tx_ctr++, mp.tx);
	dl = ms_now() + 8000;
	while (!B.closed && sent < total - 1 && ms_now() < dl) {
		raw_write(mp.fd, f + sent, 1);
		sent++;
		run_for(250);
	}
	free(f);
	cr_assert_eq(B.closed, 1, "a frame trickled in for %zu of %zu bytes was not dropped", sent,
	             total);
	cr_assert_not_null(strstr(B.reason, "a frame took more than"), "B's reason: %s", B.reason);
	cr_assert_eq(B.ctx.frames_late, 1);
	cr_assert_eq(B.nmsg, 1, "only the HAVE of manual_handshake was delivered");
	/* The peer is told (ERROR E_TIMEOUT, best effort). */
	cr_assert_eq(manual_read_until_eof(), WIRE_E_TIMEOUT);
}
