/* SPDX-License-Identifier: ISC */
/*
 * badpeer: a misbehaving source for the integration tests, built from the
 * project's own peer and codec modules. It serves the same volume as a real
 * seed (same key, volume id, secret and chunk size, so the same signed
 * manifest) but breaks one rule, chosen with --mode:
 *
 *   corrupt   flip one byte of every piece it sends
 *   badroot   send a manifest root whose signature does not verify
 *   badpage   send chunk-table pages that do not match the signed root
 *   stall     on the first request, send half a frame header and go silent
 *   oversize  on the first request, send a frame header claiming 4 GiB
 *   garbage   answer every connection with random bytes instead of a hello
 *   forgedelta after the root and have-map, send a delta 0 -> 1 signed with
 *              another key (a forgery)
 *   flipdelta  after the root and have-map, send a delta 0 -> 1 signed with the
 *              real key, with one byte of its changed entry flipped afterwards
 *
 * forgedelta, flipdelta and oldgen (below) pose as a destination that relays
 * the volume, not as its source: they authenticate with an identity of their
 * own, without the SOURCE flag, and claim every chunk (zero chunks too, as a
 * complete destination does, so that they are asked for pages). A fetcher
 * then keeps them next to the real source (two connections with the source's
 * key would be one process to it, and it would keep only one) and asks them
 * before the source.
 *
 * The live modes act as the source of a VM that still writes (seed -e): the
 * root of generation 0 is not final, and the source publishes generations
 * 1 .. LIVE_GENS as signed deltas, the last one final. Each generation
 * rewrites a few chunks of IMAGE in place (so IMAGE must be a private copy;
 * when the badpeer is done, it holds the final generation): the first data
 * chunk (generations 1 and 2), the first zero chunk (1: data), the second
 * data chunk (2: zeros), the last data chunk (LIVE_GENS), and in replaydelta
 * and gapdelta also the chunk it served last. A request for another
 * generation than the current one gets REJECT E_GENERATION, a receipt is
 * checked against the current root and acknowledged.
 *
 *   live        a correct live source: every generation is made at start; a
 *               peer's first GET_ROOT gets the root and have-map of generation
 *               0 followed by every delta in order and a HAVE for each chunk
 *               they changed (a later GET_ROOT gets the current root)
 *   oldgen      as live, but it answers a request for generation G > 0 with a
 *               PIECE of generation G - 1 carrying the chunk's bytes from before
 *               its last change
 *   replaydelta generations come while the destination fetches (every
 *               LIVE_STEP_PIECES pieces served, or after 2 s at most); after
 *               each new delta it sends every delta made so far again (replays)
 *   gapdelta    as replaydelta, but the delta 0 -> 1 is never sent: the delta
 *               1 -> 2 reaches a destination at generation 0 (a gap), which
 *               must ask for the root again and catch up from it
 *
 * or, with --mode client, it connects to the seed named in the URI as a
 * destination and sends requests a seed must refuse (beyond the volume,
 * beyond a chunk, for a zero chunk, for a wrong generation), checking each
 * REJECT code; it exits 0 if the seed answered every one correctly.
 *
 * With --mode liar, it connects as a destination three times in turn and
 * each time reports a chunk as corrupt (ERROR E_BAD_DATA naming it, as a
 * fetcher does when a chunk fails verification) although it never received
 * it: the first data chunk (which still matches the seed's hash), a zero
 * chunk (never served) and a chunk beyond the volume; it exits 0 once the
 * seed took all three. The test then checks that the seed goes on serving.
 *
 * With --mode flood, it connects as a destination, asks for a page of the
 * chunk table 2000 times without ever reading a reply (about 100 MB of
 * replies), holds the connection for 5 s and exits 0: the test then checks
 * that the seed's memory stayed bounded and that it still serves.
 *
 * usage: badpeer --mode M --uri URI -k KEY [--chunk-size N] --port-file F IMAGE
 *        badpeer --mode client|flood|liar --uri URI -k KEY IMAGE
 *
 * The delta and live modes need an image with at least three data chunks and
 * one zero chunk. Each generation made is logged as
 * "badpeer: generation G: chunk C (data|zero) ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <netinet/in.h>

#include "manifest.h"
#include "peer_int.h"
#include "scan.h"
#include "uri.h"
#include "parse.h"
#include "util.h"

static const char *mode;
static struct manifest man;
static uint8_t *root_blob;
static size_t root_blob_len;
static int image_fd;
static struct peer_ctx ctx;
static const struct vcrypto_identity *source_id;

/* forgedelta, flipdelta: the delta every peer gets after the root. */
static uint8_t *bad_delta;
static size_t bad_delta_len;

/* Generations a live source publishes after 0; the last one is final. */
#define LIVE_GENS 3
/*
 * replaydelta, gapdelta: a new generation after this many more pieces
 * served, so that it lands while the destination fetches (a 24 MiB test
 * image is about 260 pieces of 64 KiB).
 */
#define LIVE_STEP_PIECES 24

/* One connection of a source mode (p->owner). */
struct conn {
	struct peer *p;
	int roots; /* GET_ROOTs answered */
	struct conn *next;
};
static struct conn *conns;

/* Live modes: generation 0 as first published, and the deltas since (index: new generation). */
static uint8_t *gen0_root, *gen0_bits;
static size_t gen0_root_len;
static uint8_t *delta_blob[LIVE_GENS + 1];
static size_t delta_blob_len[LIVE_GENS + 1];
/* Per chunk: its bytes before its last change (oldgen serves them), or NULL. */
static uint8_t **prev_data;
/* The chunks the fixed plan changes (see the header comment). */
static uint32_t data0, data1, data_last, zero0;
static uint64_t pieces_served;
static uint32_t last_served = UINT32_MAX;

static int is(const char *m)
{
	return strcmp(mode, m) == 0;
}

static int is_live(void)
{
	return is("live") || is("oldgen") || is("replaydelta") || is("gapdelta");
}

/* Modes that pose as a destination relaying the volume (see the header comment). */
static int is_relay(void)
{
	return is("forgedelta") || is("flipdelta") || is("oldgen");
}

static int fill(void *arg, uint8_t *dst, size_t len, uint64_t off)
{
	(void)arg;
	if (pread(image_fd, dst, len, (off_t)off) != (ssize_t)len)
		return -1;
	if (is("corrupt"))
		dst[len / 2] ^= 0x5a;
	return 0;
}

/* oldgen: arg is the chunk's bytes before its last change, off the offset in the chunk. */
static int fill_prev(void *arg, uint8_t *dst, size_t len, uint64_t off)
{
	memcpy(dst, (const uint8_t *)arg + off, len);
	return 0;
}

/*
 * Have-map bits of the current entries: every chunk that is not a zero
 * chunk (a relay: every chunk). Caller frees.
 */
static uint8_t *map_bits(void)
{
	uint32_t n = man.root.chunk_count;
	uint8_t *bits = xcalloc((n + 7) / 8, 1);

	for (uint32_t c = 0; c < n; c++)
		if (is_relay() || !(man.entries[c].flags & MANIFEST_F_ZERO))
			bits[c / 8] |= (uint8_t)(1u << (c % 8));
	return bits;
}

static void send_root_and_map(struct peer *p, const uint8_t *root, size_t len, const uint8_t *bits)
{
	struct wire_msg r = {.type = WIRE_ROOT};

	r.u.blob.data = root;
	r.u.blob.len = (uint32_t)len;
	peer_send(p, &r);
	memset(&r, 0, sizeof(r));
	r.type = WIRE_HAVE_MAP;
	r.u.have_map.first = 0;
	r.u.have_map.count = man.root.chunk_count;
	r.u.have_map.bits = bits;
	peer_send(p, &r);
}

static void send_delta(struct peer *p, const uint8_t *blob, size_t len)
{
	struct wire_msg d = {.type = WIRE_DELTA};

	d.u.blob.data = blob;
	d.u.blob.len = (uint32_t)len;
	peer_send(p, &d);
}

/* HAVE for every data chunk changed after generation `after`, at its current generation. */
static void send_haves(struct peer *p, uint64_t after)
{
	for (uint32_t c = 0; c < man.root.chunk_count; c++) {
		struct wire_msg h = {.type = WIRE_HAVE};

		if ((man.entries[c].flags & MANIFEST_F_ZERO) || man.entries[c].gen <= after)
			continue;
		h.u.have.chunk = c;
		h.u.have.gen = man.entries[c].gen;
		peer_send(p, &h);
	}
}

/* The bytes the source's VM writes into chunk c in generation g: the same in every run. */
static void live_content(uint32_t c, uint64_t g, uint8_t *buf, uint32_t len)
{
	uint64_t x = (((uint64_t)c << 32) | g) * 0x9e3779b97f4a7c15ull + 1;

	for (uint32_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)(x >> 24);
	}
}

/* Add chunk c (zero: to be all zeros) to the changes ch[*n], kept ascending and unique. */
static void plan_add(struct manifest_change *ch, uint32_t *n, uint32_t c, int zero)
{
	uint32_t i = 0;

	while (i < *n && ch[i].chunk < c)
		i++;
	if (i < *n && ch[i].chunk == c)
		return; /* the fixed plan wins */
	memmove(ch + i + 1, ch + i, (*n - i) * sizeof(*ch));
	memset(&ch[i], 0, sizeof(ch[i]));
	ch[i].chunk = c;
	ch[i].entry.flags = zero ? MANIFEST_F_ZERO : 0;
	(*n)++;
}

/*
 * The source's VM writes: make the next generation. The planned chunks get
 * new bytes in IMAGE (their old bytes are kept for oldgen), the manifest
 * moves on and the signed delta is kept in delta_blob. 0 or -1.
 */
static int live_step(void)
{
	uint64_t g = man.root.generation + 1;
	struct manifest_change ch[5];
	uint32_t n = 0;

	if (g == 1) {
		plan_add(ch, &n, data0, 0);
		plan_add(ch, &n, zero0, 0);
	} else if (g == 2) {
		plan_add(ch, &n, data0, 0);
		plan_add(ch, &n, data1, 1);
	}
	if (g == LIVE_GENS)
		plan_add(ch, &n, data_last, 0);
	if (last_served != UINT32_MAX)
		plan_add(ch, &n, last_served, 0);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = ch[i].chunk, len = manifest_chunk_len(&man.root, c);
		uint64_t off = (uint64_t)c * man.root.chunk_size;
		uint8_t *buf = xmalloc(len);

		if (prev_data[c] == NULL)
			prev_data[c] = xmalloc(len);
		if (read_at(image_fd, prev_data[c], len, off) != (ssize_t)len) {
			perror("read");
			return -1;
		}
		if (ch[i].entry.flags & MANIFEST_F_ZERO)
			memset(buf, 0, len);
		else
			live_content(c, g, buf, len);
		if (write_at(image_fd, buf, len, off) != 0) {
			perror("write");
			return -1;
		}
		vcrypto_hash(ch[i].entry.hash, buf, len);
		free(buf);
		fprintf(stderr, "badpeer: generation %llu: chunk %u %s\n", (unsigned long long)g, c,
		        (ch[i].entry.flags & MANIFEST_F_ZERO) ? "zero" : "data");
	}
	if (manifest_delta_make(&man, ch, n, g == LIVE_GENS ? MANIFEST_ROOT_F_FINAL : 0,
	                        source_id->sk, &delta_blob[g], &delta_blob_len[g]) != 0)
		return -1;
	free(root_blob);
	return manifest_root_encode(&man.root, &root_blob, &root_blob_len);
}

/*
 * replaydelta, gapdelta: publish the next generation to every peer that has
 * a root, with this mode's fault (replays, or a missing first delta).
 */
static void live_advance(void)
{
	uint64_t g;

	if (man.root.generation >= LIVE_GENS)
		return;
	if (live_step() != 0) {
		fprintf(stderr, "badpeer: cannot make the next generation\n");
		exit(1);
	}
	g = man.root.generation;
	for (struct conn *c = conns; c; c = c->next) {
		if (c->roots == 0 || c->p->state != PEER_READY)
			continue;
		if (is("gapdelta") && g == 1)
			continue; /* the gap */
		send_delta(c->p, delta_blob[g], delta_blob_len[g]);
		send_haves(c->p, g - 1);
		if (is("replaydelta"))
			for (uint64_t k = 1; k <= g; k++)
				send_delta(c->p, delta_blob[k], delta_blob_len[k]);
	}
}

/* replaydelta, gapdelta: a generation at least every 2 s, should requests stop coming. */
static void live_tick(evutil_socket_t fd, short what, void *arg)
{
	static uint64_t gen_at_last_tick;
	int rooted = 0;

	(void)fd;
	(void)what;
	(void)arg;
	for (struct conn *c = conns; c; c = c->next)
		rooted |= c->roots > 0;
	if (rooted && man.root.generation == gen_at_last_tick)
		live_advance();
	gen_at_last_tick = man.root.generation;
}

/* Live modes: answer a REQUEST as a source that holds only its current generation. */
static void live_request(struct peer *p, const struct wire_block *b)
{
	const struct manifest_entry *e =
	    b->chunk < man.root.chunk_count ? &man.entries[b->chunk] : NULL;
	struct wire_msg r = {.type = WIRE_REJECT};
	uint64_t off;

	r.u.reject.blk = *b;
	if (e == NULL || (uint64_t)b->offset + b->length > manifest_chunk_len(&man.root, b->chunk))
		r.u.reject.code = WIRE_E_RANGE;
	else if (e->flags & MANIFEST_F_ZERO)
		r.u.reject.code = WIRE_E_ZERO;
	else if (b->gen != e->gen)
		r.u.reject.code = WIRE_E_GENERATION;
	if (r.u.reject.code != WIRE_OK) {
		peer_send(p, &r);
		return;
	}
	off = (uint64_t)b->chunk * man.root.chunk_size + b->offset;
	if (is("oldgen") && e->gen > 0)
		peer_send_piece(p, b->chunk, b->gen - 1, b->offset, b->length, fill_prev,
		                prev_data[b->chunk], b->offset);
	else
		peer_send_piece(p, b->chunk, b->gen, b->offset, b->length, fill, NULL, off);
	pieces_served++;
	last_served = b->chunk;
	if ((is("replaydelta") || is("gapdelta")) &&
	    pieces_served >= LIVE_STEP_PIECES * (man.root.generation + 1))
		live_advance();
}

/* Live modes: check a receipt as the source does (PROTOCOL.md §7.6) and acknowledge it. */
static void live_receipt(struct peer *p, const struct wire_msg *m)
{
	struct manifest_receipt rc;
	struct wire_msg a = {.type = WIRE_RECEIPT_ACK};
	const char *why = NULL;
	uint8_t key[VCRYPTO_KEY_LEN];

	manifest_receipt_key(key, ctx.join_secret);
	if (manifest_receipt_decode(m->u.blob.data, m->u.blob.len, key, &rc, &why) == 0 &&
	    (rc.generation != man.root.generation ||
	     memcmp(rc.root_hash, man.root.root_hash, VCRYPTO_HASH_LEN) != 0))
		why = "not for the current root";
	fprintf(stderr, "badpeer: receipt for generation %llu: %s\n",
	        (unsigned long long)rc.generation, why ? why : "ok");
	a.u.error.code = why ? WIRE_E_BAD_RECEIPT : WIRE_OK;
	a.u.error.text = why ? why : "";
	a.u.error.text_len = (uint16_t)strlen(a.u.error.text);
	peer_send(p, &a);
}

/* Client mode: the requests to send and the REJECT code each must get. */
static struct {
	struct wire_block blk;
	uint16_t want;
	const char *what;
} probes[4];
static int nprobes, probe_next, probe_failures;

static void client_send_probe(struct peer *p)
{
	struct wire_msg m = {.type = WIRE_REQUEST};

	if (probe_next == nprobes) {
		fprintf(stderr, "badpeer: %d of %d probes answered wrongly\n", probe_failures,
		        nprobes);
		event_base_loopexit(ctx.base, NULL);
		return;
	}
	m.u.request.blk = probes[probe_next].blk;
	peer_send(p, &m);
}

static void client_reply(struct peer *p, const struct wire_msg *m)
{
	int ok = m->type == WIRE_REJECT && m->u.reject.code == probes[probe_next].want;

	fprintf(stderr, "badpeer: %s: got %s %s: %s\n", probes[probe_next].what,
	        wire_type_name(m->type),
	        m->type == WIRE_REJECT ? wire_code_name(m->u.reject.code) : "",
	        ok ? "ok" : "WRONG");
	probe_failures += !ok;
	probe_next++;
	client_send_probe(p);
}

/* Liar mode: the chunks (and generations) it reports corrupt, one per connection. */
static struct {
	uint32_t chunk;
	uint64_t gen;
} lies[3];
static int nlies, lies_told;
static const struct uri *liar_uri;

static void liar_connect(evutil_socket_t fd, short what, void *arg)
{
	static struct vcrypto_identity me;

	(void)fd;
	(void)what;
	(void)arg;
	/* A new identity each time: the seed keeps one connection per identity. */
	vcrypto_identity_generate(&me);
	ctx.identity = &me;
	if (peer_connect(&ctx, liar_uri->peer[0].host, liar_uri->peer[0].port, NULL) == NULL) {
		fprintf(stderr, "badpeer: cannot connect\n");
		event_base_loopexit(ctx.base, NULL);
	}
}

/* Flood mode: the requests go out, nothing is read, then we leave. */
static void flood_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopexit(ctx.base, NULL);
}

static void on_ready(struct peer *p)
{
	struct timeval hold = {5, 0};

	if (!is("client") && !is("flood") && !is("liar")) {
		struct conn *c = xcalloc(1, sizeof(*c));

		c->p = p;
		c->next = conns;
		conns = c;
		p->owner = c;
		return;
	}
	if (is("client"))
		client_send_probe(p);
	if (is("liar")) {
		int i = lies_told++; /* counted first: on_close runs inside the close */

		fprintf(stderr, "badpeer: reporting chunk %u of generation %llu corrupt\n",
		        lies[i].chunk, (unsigned long long)lies[i].gen);
		peer_close_bad_chunk(p, lies[i].chunk, lies[i].gen, "chunk %u failed verification",
		                     lies[i].chunk);
		return;
	}
	if (!is("flood"))
		return;
	peer_pause_read(p);
	for (int i = 0; i < 2000; i++) {
		struct wire_msg m = {.type = WIRE_GET_PAGE};

		m.u.get_page.page = 0;
		peer_send(p, &m);
	}
	event_base_once(ctx.base, -1, EV_TIMEOUT, flood_done, NULL, &hold);
}

static void on_msg(struct peer *p, const struct wire_msg *m)
{
	struct wire_msg r;
	static uint8_t page[MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN];

	memset(&r, 0, sizeof(r));
	if (is("client")) {
		if (m->type == WIRE_REJECT || m->type == WIRE_PIECE)
			client_reply(p, m);
		return;
	}
	switch (m->type) {
	case WIRE_GET_ROOT: {
		struct conn *c = p->owner;
		uint8_t *blob = xmalloc(root_blob_len);
		uint8_t *bits = map_bits();

		if (c != NULL && ++c->roots > 1)
			fprintf(stderr,
			        "badpeer: %s asked for the root again (we hold generation %llu)\n",
			        p->name, (unsigned long long)man.root.generation);
		memcpy(blob, root_blob, root_blob_len);
		if (is("badroot"))
			blob[MANIFEST_ROOT_HDR_LEN] ^= 1; /* first page hash */
		if (c != NULL && c->roots == 1 && (is("live") || is("oldgen"))) {
			/* Generation 0 as first published, then the deltas since. */
			send_root_and_map(p, gen0_root, gen0_root_len, gen0_bits);
			for (uint64_t g = 1; g <= man.root.generation; g++)
				send_delta(p, delta_blob[g], delta_blob_len[g]);
			send_haves(p, 0);
		} else {
			send_root_and_map(p, blob, root_blob_len, bits);
		}
		if (bad_delta != NULL)
			send_delta(p, bad_delta, bad_delta_len);
		free(bits);
		free(blob);
		return;
	}
	case WIRE_RECEIPT:
		if (is_live())
			live_receipt(p, m);
		return;
	case WIRE_GET_PAGE: {
		size_t n = manifest_page_encode(&man, m->u.get_page.page, page, sizeof(page));

		if (is("badpage"))
			page[n - 1] ^= 1;
		r.type = WIRE_PAGE;
		r.u.page.page = m->u.get_page.page;
		r.u.page.root_gen = man.root.generation;
		r.u.page.data = page;
		r.u.page.len = (uint32_t)n;
		peer_send(p, &r);
		return;
	}
	case WIRE_REQUEST: {
		const struct wire_block *b = &m->u.request.blk;
		struct evbuffer *out = bufferevent_get_output(p->bev);

		if (is("stall")) {
			static const uint8_t half[2] = {0, 4};

			evbuffer_add(out, half, sizeof(half));
			/* Stop answering anything: the fetcher must time out. */
			peer_pause_read(p);
			return;
		}
		if (is("oversize")) {
			static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xf0};

			evbuffer_add(out, huge, sizeof(huge));
			peer_pause_read(p);
			return;
		}
		if (is_live()) {
			live_request(p, b);
			return;
		}
		peer_send_piece(p, b->chunk, b->gen, b->offset, b->length, fill, NULL,
		                (uint64_t)b->chunk * man.root.chunk_size + b->offset);
		return;
	}
	default:
		return;
	}
}

static void on_close(struct peer *p, int fatal_err, const char *reason)
{
	(void)fatal_err;
	fprintf(stderr, "badpeer: %s closed: %s\n", p->name, reason);
	for (struct conn **cp = &conns; *cp; cp = &(*cp)->next)
		if (*cp == p->owner) {
			struct conn *c = *cp;

			*cp = c->next;
			free(c);
			p->owner = NULL;
			break;
		}
	if (is("client")) {
		probe_failures++;
		event_base_loopexit(ctx.base, NULL);
	}
	if (is("liar")) {
		static int closes;

		/* Bounded: a seed that refuses us does not keep us dialling. */
		/* The loop runs a moment more, so that the last ERROR is flushed. */
		struct timeval grace = {0, 300000};

		if (lies_told < nlies && ++closes < 2 * nlies)
			event_base_once(ctx.base, -1, EV_TIMEOUT, liar_connect, NULL, NULL);
		else
			event_base_loopexit(ctx.base, &grace);
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	(void)l;
	(void)arg;
	if (is("garbage")) {
		uint8_t junk[200];

		vcrypto_random(junk, sizeof(junk));
		if (write(fd, junk, sizeof(junk)) < 0)
			perror("write");
		close(fd);
		return;
	}
	peer_accept(&ctx, fd, sa, salen, NULL);
}

/*
 * Delta and live modes, once the manifest of generation 0 is built: pick
 * the chunks to change; forgedelta and flipdelta make their bad delta, live
 * and oldgen every generation. 0, or -1 (an image without the chunks
 * needed, logged).
 */
static int delta_setup(void)
{
	uint32_t ndata = 0;

	data0 = data1 = data_last = zero0 = UINT32_MAX;
	for (uint32_t c = 0; c < man.root.chunk_count; c++) {
		if (man.entries[c].flags & MANIFEST_F_ZERO) {
			if (zero0 == UINT32_MAX)
				zero0 = c;
			continue;
		}
		if (ndata == 0)
			data0 = c;
		else if (ndata == 1)
			data1 = c;
		data_last = c;
		ndata++;
	}
	if (ndata < 3 || zero0 == UINT32_MAX) {
		fprintf(stderr,
		        "badpeer: mode %s needs an image with three data chunks and a zero "
		        "chunk\n",
		        mode);
		return -1;
	}
	if (is("forgedelta") || is("flipdelta")) {
		/* A copy of the manifest moves on; ours stays at generation 0. */
		struct manifest copy;
		struct manifest_entry *e = xcalloc(man.root.chunk_count, sizeof(*e));
		struct manifest_change ch;
		struct vcrypto_identity other;
		uint32_t len = manifest_chunk_len(&man.root, data0);
		uint8_t *buf = xmalloc(len);

		memcpy(e, man.entries, man.root.chunk_count * sizeof(*e));
		if (manifest_build(&copy, man.root.volume_id, man.root.image_size,
		                   man.root.chunk_size, 0, e, source_id->sk) != 0)
			return -1;
		memset(&ch, 0, sizeof(ch));
		ch.chunk = data0;
		live_content(data0, 1, buf, len);
		vcrypto_hash(ch.entry.hash, buf, len);
		free(buf);
		vcrypto_identity_generate(&other);
		if (manifest_delta_make(&copy, &ch, 1, MANIFEST_ROOT_F_FINAL,
		                        is("forgedelta") ? other.sk : source_id->sk, &bad_delta,
		                        &bad_delta_len) != 0)
			return -1;
		vcrypto_identity_wipe(&other);
		manifest_free(&copy);
		if (is("flipdelta")) /* the first byte of the changed entry's hash */
			bad_delta[MANIFEST_DELTA_HDR + 4 + 16] ^= 1;
		return 0;
	}
	gen0_root = xmalloc(root_blob_len);
	memcpy(gen0_root, root_blob, root_blob_len);
	gen0_root_len = root_blob_len;
	gen0_bits = map_bits();
	prev_data = xcalloc(man.root.chunk_count, sizeof(*prev_data));
	if (is("live") || is("oldgen"))
		for (int g = 1; g <= LIVE_GENS; g++)
			if (live_step() != 0)
				return -1;
	return 0;
}

/*
 * Client modes: connect to the seed named first in the URI as a destination
 * (with an identity of its own, not the source's) and run until done. 0 or -1.
 */
static int run_as_destination(const struct uri *u)
{
	static struct vcrypto_identity me;

	vcrypto_identity_generate(&me);
	ctx.identity = &me;
	ctx.is_source = 0;
	ctx.timeout_s = 30;
	ctx.dns = evdns_base_new(ctx.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (peer_connect(&ctx, u->peer[0].host, u->peer[0].port, NULL) == NULL)
		return -1;
	event_base_dispatch(ctx.base);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"mode", required_argument, NULL, 'm'},
	    {"uri", required_argument, NULL, 'u'},
	    {"key", required_argument, NULL, 'k'},
	    {"chunk-size", required_argument, NULL, 'c'},
	    {"port-file", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	static const struct peer_ops ops = {on_ready, on_msg, NULL, on_close, NULL};
	const char *uri_text = NULL, *key = NULL, *port_file = NULL;
	uint64_t chunk_size = MANIFEST_CHUNK_DEFAULT;
	struct vcrypto_identity id;
	struct manifest_entry *entries;
	struct uri u;
	struct stat st;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct evconnlistener *l;
	char err[200];
	FILE *f;
	int c;

	signal(SIGPIPE, SIG_IGN);
	log_init("badpeer", LOG_LEVEL_INFO);
	while ((c = getopt_long(argc, argv, "m:u:k:c:p:", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mode = optarg;
			break;
		case 'u':
			uri_text = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'c':
			if (parse_size(optarg, &chunk_size) != 0)
				return 2;
			break;
		case 'p':
			port_file = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!mode || !uri_text || !key ||
	    (!port_file && strcmp(mode, "client") != 0 && strcmp(mode, "flood") != 0 &&
	     strcmp(mode, "liar") != 0) ||
	    optind + 1 != argc) {
		fprintf(stderr, "usage: badpeer --mode M --uri URI -k KEY --port-file F IMAGE\n");
		return 2;
	}
	if (vcrypto_init() != 0 || vcrypto_identity_load(key, &id) != 0)
		return 1;
	if (uri_parse(uri_text, strlen(uri_text), &u, err, sizeof(err)) != 0) {
		fprintf(stderr, "badpeer: %s\n", err);
		return 1;
	}
	image_fd = open(argv[optind], is_live() ? O_RDWR : O_RDONLY);
	if (image_fd < 0 || fstat(image_fd, &st) != 0) {
		perror(argv[optind]);
		return 1;
	}
	entries = xcalloc(manifest_chunk_count((uint64_t)st.st_size, (uint32_t)chunk_size),
	                  sizeof(*entries));
	if (scan_image(image_fd, (uint64_t)st.st_size, (uint32_t)chunk_size, 0, 0, entries, NULL,
	               NULL) != 0 ||
	    manifest_build(&man, u.volume_id, (uint64_t)st.st_size, (uint32_t)chunk_size, 0,
	                   entries, id.sk) != 0)
		return 1;
	source_id = &id;
	/* As a seed without a VM: generation 0 is final. A live source's is not. */
	if (!is_live())
		manifest_set_flags(&man, MANIFEST_ROOT_F_FINAL, id.sk);
	if (manifest_root_encode(&man.root, &root_blob, &root_blob_len) != 0)
		return 1;
	if ((is_live() || is("forgedelta") || is("flipdelta")) && delta_setup() != 0)
		return 2;

	ctx.base = event_base_new();
	ctx.ops = &ops;
	memcpy(ctx.volume_id, u.volume_id, sizeof(ctx.volume_id));
	memcpy(ctx.source_key, u.key, sizeof(ctx.source_key));
	memcpy(ctx.join_secret, u.secret, sizeof(ctx.join_secret));
	ctx.identity = &id;
	ctx.is_source = 1;
	ctx.timeout_s = 3600;
	if (is_relay()) {
		static struct vcrypto_identity relay_id;

		vcrypto_identity_generate(&relay_id);
		ctx.identity = &relay_id;
		ctx.is_source = 0;
	}

	if (is("flood"))
		return run_as_destination(&u) == 0 ? 0 : 1;
	if (is("liar")) {
		for (uint32_t i = 0; i < man.root.chunk_count && nlies < 2; i++) {
			int zero = (man.entries[i].flags & MANIFEST_F_ZERO) != 0;

			if ((nlies == 0 && !zero) || (nlies == 1 && zero))
				lies[nlies++].chunk = i;
		}
		if (nlies < 2) {
			fprintf(stderr, "badpeer: liar mode needs an image whose first data chunk "
			                "comes before a zero chunk\n");
			return 2;
		}
		lies[nlies++].chunk = man.root.chunk_count + 3;
		liar_uri = &u;
		if (run_as_destination(&u) != 0)
			return 1;
		return lies_told == nlies ? 0 : 1;
	}
	if (is("client")) {
		uint32_t zero_chunk = UINT32_MAX, data_chunk = UINT32_MAX;

		for (uint32_t i = 0; i < man.root.chunk_count; i++) {
			if ((man.entries[i].flags & MANIFEST_F_ZERO) && zero_chunk == UINT32_MAX)
				zero_chunk = i;
			if (!(man.entries[i].flags & MANIFEST_F_ZERO) && data_chunk == UINT32_MAX)
				data_chunk = i;
		}
		if (zero_chunk == UINT32_MAX || data_chunk == UINT32_MAX) {
			fprintf(stderr,
			        "badpeer: client mode needs an image with zero and data chunks\n");
			return 2;
		}
		probes[0].blk = (struct wire_block){man.root.chunk_count + 5, 0, 0, 4096};
		probes[0].want = WIRE_E_RANGE;
		probes[0].what = "chunk beyond the volume";
		probes[1].blk = (struct wire_block){data_chunk, 0, man.root.chunk_size - 100, 4096};
		probes[1].want = WIRE_E_RANGE;
		probes[1].what = "block beyond the chunk";
		probes[2].blk = (struct wire_block){zero_chunk, 0, 0, 4096};
		probes[2].want = WIRE_E_ZERO;
		probes[2].what = "zero chunk";
		probes[3].blk = (struct wire_block){data_chunk, 7, 0, 4096};
		probes[3].want = WIRE_E_GENERATION;
		probes[3].what = "wrong generation";
		nprobes = 4;
		if (run_as_destination(&u) != 0)
			return 1;
		return probe_failures == 0 && probe_next == nprobes ? 0 : 1;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(ctx.base, on_accept, NULL,
	                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	                            (struct sockaddr *)&sin, sizeof(sin));
	if (l == NULL) {
		perror("listen");
		return 1;
	}
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
	f = fopen(port_file, "w");
	if (f == NULL)
		return 1;
	fprintf(f, "%u\n", ntohs(sin.sin_port));
	fclose(f);
	if (is("replaydelta") || is("gapdelta")) {
		struct timeval second = {1, 0};

		event_add(event_new(ctx.base, -1, EV_PERSIST, live_tick, NULL), &second);
	}
	event_base_dispatch(ctx.base);
	return 0;
}
