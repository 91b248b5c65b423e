/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of the piece picker (p2pvbd/swarm/picker.c) alone: the policy,
 * without a connection, a file or a struct swarm. A small world stands in
 * for the swarm: chunk bitmaps, holder counts, the want list, transfers and
 * peers that are nothing but their pick_peer; it acts on each decision the
 * way the swarm does (a transfer starts, its bytes are in flight).
 *
 * What is checked: faults before readahead before the background; rarest
 * first; other destinations before the source (and the source first for a
 * fault); a peer's pipeline bound, its BUSY back-off and the global bounds;
 * endgame duplicates only when nothing else is left, at most two copies; no
 * chunk picked twice outside endgame; settled chunks never picked; the
 * writable working set (chunks the source's VM keeps changing) waits behind
 * every cold chunk, and is hot only for a while after its last change.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "swarm/swarm_int.h"

#define NCHUNKS (2 * MANIFEST_PAGE_ENTRIES) /* two pages of the chunk table */
#define CHUNK   (256u * 1024u)              /* 4 blocks: four fit a 1 MiB pipeline */
#define NPEERS  6
#define T_NOW   1000000000ull /* "now" for the BUSY back-off */
#define MIB     (1024u * 1024u)

/* The swarm as the picker sees it, and what the swarm does with its decisions. */
static struct world {
	uint8_t *avail, *local, *verifying, *fetching;
	uint8_t holders[NCHUNKS];
	struct manifest_entry page[1]; /* stands for a loaded page's entries */
	struct manifest_entry *entries[NCHUNKS / MANIFEST_PAGE_ENTRIES];
	struct xfer xfers[SWARM_XFER_MAX];
	int nxfers, nverifying, pages_unasked;
	uint8_t changes[NCHUNKS]; /* the writable working set (pick_is_hot) */
	uint32_t changed_tick[NCHUNKS];
	uint32_t now_tick;
	int defer_hot;
	struct pick_want want;
	struct speer peers[NPEERS];
} W;

static void setup(void)
{
	memset(&W, 0, sizeof(W));
	W.avail = bitmap_new(NCHUNKS);
	W.local = bitmap_new(NCHUNKS);
	W.verifying = bitmap_new(NCHUNKS);
	W.fetching = bitmap_new(NCHUNKS);
	for (size_t pg = 0; pg < ARRAY_LEN(W.entries); pg++)
		W.entries[pg] = W.page;
	W.want.rng = 0x9e3779b97f4a7c15ull;
	for (int i = 0; i < NPEERS; i++)
		W.peers[i].pk.have = bitmap_new(NCHUNKS);
}

static void teardown(void)
{
	free(W.avail);
	free(W.local);
	free(W.verifying);
	free(W.fetching);
	free(W.want.list);
	for (int i = 0; i < NPEERS; i++)
		free(W.peers[i].pk.have);
}

TestSuite(picker, .init = setup, .fini = teardown);

static struct pick_view view(void)
{
	struct pick_view v = {
	    .avail = W.avail,
	    .local = W.local,
	    .verifying = W.verifying,
	    .fetching = W.fetching,
	    .holders = W.holders,
	    .entries = W.entries,
	    .xfers = W.xfers,
	    .nxfers = W.nxfers,
	    .nverifying = W.nverifying,
	    .pages_unasked = W.pages_unasked,
	    .changes = W.changes,
	    .changed_tick = W.changed_tick,
	    .now_tick = W.now_tick,
	    .defer_hot = W.defer_hot,
	};

	return v;
}

/* Peer i is the source (or not) and holds chunks [first, last). */
static struct speer *peer(int i, int is_source, uint32_t first, uint32_t last)
{
	struct speer *sp = &W.peers[i];

	sp->pk.is_source = is_source;
	for (uint32_t c = first; c < last; c++) {
		bit_set(sp->pk.have, c);
		W.holders[c]++;
	}
	return sp;
}

static void want(uint32_t first, uint32_t last)
{
	for (uint32_t c = first; c < last; c++)
		pick_want_push(&W.want, c);
}

/* What the swarm does on a decision to fetch c from sp (xfer_start). */
static struct xfer *start(struct speer *sp, uint32_t c, uint8_t prio)
{
	struct xfer *x = &W.xfers[W.nxfers++];

	cr_assert_leq(W.nxfers, SWARM_XFER_MAX);
	memset(x, 0, sizeof(*x));
	x->chunk = c;
	x->len = CHUNK;
	x->from = sp;
	x->prio = prio;
	x->blocks_missing = xfer_all_blocks(CHUNK);
	bit_set(W.fetching, c);
	sp->pk.inflight_bytes += CHUNK;
	return x;
}

/* Transfer i arrived whole and was verified: c is readable (the swarm's verify_done). */
static void arrive(int i)
{
	struct xfer *x = &W.xfers[i];
	uint32_t c = x->chunk;

	x->from->pk.inflight_bytes -= __builtin_popcountll(x->blocks_missing) * (CHUNK / 4);
	/* Its other copy (endgame) is cancelled: the first to arrive wins. */
	for (int k = W.nxfers - 1; k >= 0; k--)
		if (W.xfers[k].chunk == c && k != i)
			W.xfers[k].from->pk.inflight_bytes -=
			    __builtin_popcountll(W.xfers[k].blocks_missing) * (CHUNK / 4);
	for (int k = W.nxfers - 1; k >= 0; k--)
		if (W.xfers[k].chunk == c)
			W.xfers[k] = W.xfers[--W.nxfers];
	bit_clear(W.fetching, c);
	bit_set(W.avail, c);
}

/* The next background pick for sp, or -1 (cr-asserted not to come back twice). */
static long next(struct speer *sp)
{
	struct pick_view v = view();
	uint32_t c;

	if (pick_background(&W.want, &v, sp, T_NOW, &c) != 0)
		return -1;
	cr_assert_lt(c, NCHUNKS);
	return c;
}

/* Fill sp's pipeline as the swarm does (fill_pipeline); returns the count picked. */
static int fill(struct speer *sp, uint32_t *out, int max)
{
	long c;
	int n = 0;

	while ((c = next(sp)) >= 0) {
		cr_assert_lt(n, max, "more picks than the test expected");
		out[n++] = (uint32_t)c;
		start(sp, (uint32_t)c, WIRE_PRIO_BACKGROUND);
	}
	return n;
}

/* ---- Priorities: faults, then readahead, then the background ----------- */

Test(picker, prio_order_on_the_wire)
{
	/* The picker compares priorities as numbers. */
	cr_assert_gt(WIRE_PRIO_URGENT, WIRE_PRIO_READAHEAD);
	cr_assert_gt(WIRE_PRIO_READAHEAD, WIRE_PRIO_BACKGROUND);
}

Test(picker, fault_raises_a_background_or_readahead_transfer)
{
	struct speer *a = peer(0, 0, 0, 100);
	struct pick_view v;
	int i = -1;

	start(a, 7, WIRE_PRIO_BACKGROUND);
	start(a, 8, WIRE_PRIO_READAHEAD);
	start(a, 9, WIRE_PRIO_URGENT);
	v = view();
	cr_assert_eq(pick_fault(&v, 7, WIRE_PRIO_URGENT, &i), PICK_RAISE);
	cr_assert_eq(i, 0);
	cr_assert_eq(pick_fault(&v, 8, WIRE_PRIO_URGENT, &i), PICK_RAISE);
	cr_assert_eq(i, 1);
	/* Asked urgently already: nothing to do. */
	cr_assert_eq(pick_fault(&v, 9, WIRE_PRIO_URGENT, &i), PICK_NONE);
	/* --no-boost asks at background priority: a background transfer is enough. */
	cr_assert_eq(pick_fault(&v, 7, WIRE_PRIO_BACKGROUND, &i), PICK_NONE);
	/* Readahead is a hint: it never raises nor doubles a transfer in flight. */
	cr_assert_not(pick_readahead(&v, 7));
	cr_assert_not(pick_readahead(&v, 9));
}

Test(picker, fault_and_readahead_go_past_a_full_pipeline)
{
	struct speer *a = peer(0, 0, 0, 100);
	uint32_t got[16];
	struct pick_view v;
	int i;

	want(0, 100);
	cr_assert_eq(fill(a, got, 16), 4); /* 1 MiB: four 256 KiB chunks */
	cr_assert_eq(next(a), -1, "the background stops at the pipeline bound");
	v = view();
	for (uint32_t c = 0; c < 100; c++) {
		if (bit_get(W.fetching, c))
			continue;
		cr_assert_eq(pick_fault(&v, c, WIRE_PRIO_URGENT, &i), PICK_START, "chunk %u", c);
		cr_assert(pick_readahead(&v, c), "chunk %u", c);
	}
}

Test(picker, fault_on_a_chunk_whose_page_is_missing_asks_for_the_page)
{
	struct speer *a = peer(0, 0, 0, NCHUNKS);
	struct pick_view v;
	uint32_t c = MANIFEST_PAGE_ENTRIES + 3; /* on the second page */
	int i;

	W.entries[1] = NULL;
	v = view();
	cr_assert_eq(pick_fault(&v, c, WIRE_PRIO_URGENT, &i), PICK_PAGE);
	cr_assert_not(pick_readahead(&v, c));
	/* The background cannot ask for it either (its entry, its generation, is unknown). */
	pick_want_push(&W.want, c);
	cr_assert_eq(next(a), -1);
}

Test(picker, settled_chunks_are_never_picked)
{
	struct speer *a = peer(0, 0, 0, 10);
	struct pick_view v;
	int i;

	bit_set(W.avail, 1);
	bit_set(W.local, 2);
	bit_set(W.verifying, 3);
	v = view();
	for (uint32_t c = 1; c <= 3; c++) {
		cr_assert_eq(pick_fault(&v, c, WIRE_PRIO_URGENT, &i), PICK_NONE, "chunk %u", c);
		cr_assert_not(pick_readahead(&v, c), "chunk %u", c);
	}
	want(1, 5);
	cr_assert_eq(next(a), 4);
	start(a, 4, WIRE_PRIO_BACKGROUND);
	cr_assert_eq(next(a), -1);
	/* The settled entries were counted dead, for compaction. */
	cr_assert_geq(W.want.dead, 3);
}

Test(picker, a_full_transfer_table_stops_everything)
{
	struct speer *a = peer(0, 0, 0, NCHUNKS);
	struct pick_view v;
	int i;

	want(0, NCHUNKS - 1);
	for (int k = 0; k < SWARM_XFER_MAX; k++) {
		long c = next(a);

		cr_assert_geq(c, 0);
		start(a, (uint32_t)c, WIRE_PRIO_BACKGROUND);
		a->pk.inflight_bytes = 0; /* as if its pipeline had room: only the table is full */
	}
	v = view();
	cr_assert_eq(next(a), -1);
	cr_assert_eq(pick_fault(&v, NCHUNKS - 1, WIRE_PRIO_URGENT, &i), PICK_NONE);
	cr_assert_not(pick_readahead(&v, NCHUNKS - 1));
}

/* ---- Rarest first ------------------------------------------------------ */

Test(picker, rarest_first)
{
	struct speer *a = peer(0, 0, 0, 100);
	uint32_t order[100];

	peer(1, 0, 0, 100);
	peer(2, 0, 0, 100);
	peer(3, 0, 20, 100); /* chunks 20..99: four holders */
	W.holders[42] = 1;   /* 42: only a has it */
	W.holders[70] = 2;
	W.holders[71] = 2;
	want(0, 100);
	for (int k = 0; k < 100; k++) {
		long c = next(a);

		cr_assert_geq(c, 0);
		order[k] = (uint32_t)c;
		start(a, (uint32_t)c, WIRE_PRIO_BACKGROUND);
		arrive(W.nxfers - 1);
	}
	cr_assert_eq(order[0], 42);
	cr_assert((order[1] == 70 && order[2] == 71) || (order[1] == 71 && order[2] == 70));
	/* Then the 20 with three holders, before any with four. */
	for (int k = 3; k < 23; k++)
		cr_assert_lt(order[k], 20, "pick %d was chunk %u", k, order[k]);
	cr_assert_eq(next(a), -1);
}

Test(picker, only_chunks_the_peer_has)
{
	struct speer *a = peer(0, 0, 10, 20);
	uint32_t got[8];
	int n;

	want(0, 30);
	n = fill(a, got, 8);
	cr_assert_eq(n, 4);
	for (int k = 0; k < n; k++)
		cr_assert(got[k] >= 10 && got[k] < 20);
}

Test(picker, equals_are_spread_by_the_random_start)
{
	uint32_t first[16];
	int distinct = 0;

	peer(0, 0, 0, 64);
	want(0, 64);
	for (int s = 0; s < 16; s++) {
		W.want.rng = 0x1234567ull * (uint64_t)(s + 1) | 1;
		first[s] = (uint32_t)next(&W.peers[0]);
		pick_want_push(&W.want, first[s]); /* put it back: the next seed sees all 64 */
	}
	for (int s = 0; s < 16; s++) {
		int seen = 0;

		for (int k = 0; k < s; k++)
			seen |= first[k] == first[s];
		distinct += !seen;
	}
	cr_assert_geq(distinct, 8, "destinations with other seeds should start elsewhere");
}

/* ---- Peers: the source's upload is the scarcest ------------------------- */

Test(picker, other_destinations_are_filled_before_the_source)
{
	struct speer *order[4] = {&W.peers[0], &W.peers[1], &W.peers[2], &W.peers[3]};

	peer(0, 1, 0, 0); /* the source */
	peer(1, 0, 0, 0);
	peer(2, 0, 0, 0);
	peer(3, 0, 0, 0);
	pick_fill_order(order, 4);
	cr_assert_eq(order[0], &W.peers[1]);
	cr_assert_eq(order[1], &W.peers[2]);
	cr_assert_eq(order[2], &W.peers[3]);
	cr_assert_eq(order[3], &W.peers[0]);
}

Test(picker, the_source_gets_what_the_destinations_cannot_give)
{
	struct speer *src = peer(0, 1, 0, 40), *d = peer(1, 0, 0, 20);
	struct speer *order[2] = {src, d};
	uint32_t got[40];
	int n;

	want(0, 40);
	pick_fill_order(order, 2);
	cr_assert_eq(order[0], d);
	n = fill(order[0], got, 40);
	cr_assert_eq(n, 4);
	n = fill(order[1], got, 40);
	cr_assert_eq(n, 4);
	/* Rarest first: the chunks only the source has go to the source. */
	for (int k = 0; k < n; k++)
		cr_assert_geq(got[k], 20, "the source was asked for chunk %u", got[k]);
}

Test(picker, a_fault_goes_to_the_source_first_then_the_least_loaded)
{
	struct speer *src = peer(0, 1, 0, 10), *d1 = peer(1, 0, 0, 20), *d2 = peer(2, 0, 0, 20);
	struct speer *none = peer(3, 0, 50, 60);
	struct speer *all[4] = {none, d1, src, d2};

	src->pk.inflight_bytes = 8 * MIB;
	d1->pk.inflight_bytes = 2 * MIB;
	d2->pk.inflight_bytes = 1 * MIB;
	cr_assert_eq(pick_peer_for(all, 4, 5), src, "the source, however loaded");
	cr_assert_eq(pick_peer_for(all, 4, 15), d2, "the least loaded of those that have it");
	d2->pk.inflight_bytes = 2 * MIB;
	cr_assert_eq(pick_peer_for(all, 4, 15), d1, "among equals, the first");
	cr_assert_null(pick_peer_for(all, 4, 30), "nobody has it");
	cr_assert_null(pick_peer_for(all, 0, 5));
}

Test(picker, a_destinations_have_takes_back_an_untouched_source_request)
{
	struct speer *src = peer(0, 1, 0, 10), *d = peer(1, 0, 0, 10);
	struct pick_view v;
	struct xfer *x;

	start(d, 1, WIRE_PRIO_BACKGROUND);
	start(src, 1, WIRE_PRIO_BACKGROUND); /* index 1 */
	x = start(src, 2, WIRE_PRIO_BACKGROUND);
	x->blocks_missing &= ~1ull; /* a block of 2 arrived */
	start(src, 3, WIRE_PRIO_URGENT);
	start(src, 4, WIRE_PRIO_READAHEAD);
	v = view();
	cr_assert_eq(pick_offload(&v, 1), 1, "the source's, not the destination's");
	cr_assert_eq(pick_offload(&v, 2), -1, "bytes of it arrived already");
	cr_assert_eq(pick_offload(&v, 3), -1, "a fault waits for it");
	cr_assert_eq(pick_offload(&v, 4), -1, "the VM is about to read it");
	cr_assert_eq(pick_offload(&v, 5), -1, "not in flight");
}

/* ---- Bounds ------------------------------------------------------------- */

Test(picker, pipeline_cap_follows_the_rate_within_bounds)
{
	struct pick_peer p = {0};

	cr_assert_eq(pick_pipeline_cap(&p), 1 * MIB);
	p.rate = 10e6; /* 10 MB/s: half a second of it */
	cr_assert_eq(pick_pipeline_cap(&p), 5000000);
	p.rate = 1e9;
	cr_assert_eq(pick_pipeline_cap(&p), SWARM_INFLIGHT_MAX);
}

Test(picker, a_peers_pipeline_bound_is_respected)
{
	static const double rates[] = {0, 3e6, 10e6, 1e9};

	for (size_t r = 0; r < ARRAY_LEN(rates); r++) {
		struct speer *a = &W.peers[r];
		uint64_t cap;
		uint32_t got[64];
		int n;

		peer((int)r, 0, 0, NCHUNKS);
		a->pk.rate = rates[r];
		cap = pick_pipeline_cap(&a->pk);
		want((uint32_t)r * 100, (uint32_t)r * 100 + 100);
		n = fill(a, got, 64);
		cr_assert_eq(n, (int)((cap + CHUNK - 1) / CHUNK), "rate %g", rates[r]);
		cr_assert_geq(a->pk.inflight_bytes, cap);
		cr_assert_lt(a->pk.inflight_bytes, cap + CHUNK);
	}
}

Test(picker, a_busy_peer_is_left_alone_until_its_back_off_ends)
{
	struct speer *a = peer(0, 0, 0, 10);

	want(0, 10);
	a->pk.busy_until_ns = T_NOW + 1;
	cr_assert_eq(next(a), -1);
	cr_assert_eq(a->pk.busy_until_ns, T_NOW + 1);
	a->pk.busy_until_ns = T_NOW;
	cr_assert_geq(next(a), 0);
	cr_assert_eq(a->pk.busy_until_ns, 0, "the back-off is over and forgotten");
}

Test(picker, full_verifiers_stop_the_background)
{
	struct speer *a = peer(0, 0, 0, 10);

	want(0, 10);
	W.nverifying = SWARM_VERIFY_MAX;
	cr_assert_eq(next(a), -1);
	W.nverifying = SWARM_VERIFY_MAX - 1;
	cr_assert_geq(next(a), 0);
}

/* ---- Endgame ------------------------------------------------------------ */

Test(picker, no_endgame_while_another_chunk_is_wanted)
{
	struct speer *a = peer(0, 0, 0, 10), *b = peer(1, 0, 0, 5);

	for (uint32_t c = 0; c < 9; c++)
		start(a, c, WIRE_PRIO_BACKGROUND);
	/* Chunk 9 is wanted, unrequested, and b lacks it: b waits rather than duplicate. */
	want(9, 10);
	cr_assert_eq(next(b), -1);
	/* Once someone asked for 9, b may help with what is left. */
	start(a, 9, WIRE_PRIO_BACKGROUND);
	cr_assert_geq(next(b), 0);
}

Test(picker, no_endgame_while_pages_are_not_asked_for)
{
	struct speer *a = peer(0, 0, 0, 10), *b = peer(1, 0, 0, 10);

	start(a, 3, WIRE_PRIO_BACKGROUND);
	W.pages_unasked = 1; /* they may name chunks nobody fetches yet */
	cr_assert_eq(next(b), -1);
	W.pages_unasked = 0;
	cr_assert_eq(next(b), 3);
}

Test(picker, endgame_duplicates_the_most_missing_at_most_twice)
{
	struct speer *a = peer(0, 0, 0, 10), *b = peer(1, 0, 0, 10), *c = peer(2, 0, 0, 10);
	struct speer *d = peer(3, 0, 5, 6);
	struct xfer *x;

	x = start(a, 1, WIRE_PRIO_BACKGROUND);
	x->blocks_missing = 0x1; /* one block missing */
	x = start(a, 2, WIRE_PRIO_BACKGROUND);
	x->blocks_missing = 0x7; /* three */
	x = start(a, 3, WIRE_PRIO_BACKGROUND);
	x->blocks_missing = 0x3; /* two */
	x = start(a, 5, WIRE_PRIO_BACKGROUND);
	x->blocks_missing = 0x1;
	cr_assert_eq(next(a), -1, "never a second copy from the same peer");
	cr_assert_eq(next(b), 2, "the one with the most blocks missing");
	start(b, 2, WIRE_PRIO_BACKGROUND);
	cr_assert_eq(next(c), 3, "2 has two copies already");
	start(c, 3, WIRE_PRIO_BACKGROUND);
	cr_assert_eq(next(d), 5, "only one it has");
	start(d, 5, WIRE_PRIO_BACKGROUND);
	cr_assert_eq(next(b), 1, "not 2 again: b fetches it already; 3 has two copies");
}

/* ---- The whole run: nothing twice outside endgame ----------------------- */

Test(picker, nothing_picked_twice_outside_endgame)
{
	enum { N = 300 };
	struct speer *order[4];
	int picked[N] = {0}, copies = 0, done = 0, rounds = 0;
	uint64_t rng = 42;

	order[0] = peer(0, 1, 0, N);
	order[1] = peer(1, 0, 0, N);
	order[2] = peer(2, 0, 50, N);
	order[3] = peer(3, 0, 0, 200);
	for (uint32_t c = 0; c < N; c++)
		W.holders[c] += (uint8_t)(c % 3);
	want(0, N);
	pick_fill_order(order, 4);
	while (done < N) {
		cr_assert_lt(++rounds, 10 * N, "no progress");
		/* The swarm's schedule: each peer's pipeline filled, in order. */
		for (int p = 0; p < 4; p++) {
			long c;

			while ((c = next(order[p])) >= 0) {
				int live = 0;

				cr_assert_not(bit_get(W.avail, (uint32_t)c),
				              "chunk %ld picked when held", c);
				if (bit_get(W.fetching, (uint32_t)c)) {
					/* A duplicate: only in endgame, once nothing is left to
					 * ask. */
					for (uint32_t k = 0; k < N; k++)
						live |=
						    !bit_get(W.avail, k) && !bit_get(W.fetching, k);
					cr_assert_not(live,
					              "chunk %ld asked twice with chunks left", c);
					copies++;
				}
				cr_assert_lt(picked[c], 2, "chunk %ld asked three times", c);
				picked[c]++;
				start(order[p], (uint32_t)c, WIRE_PRIO_BACKGROUND);
			}
		}
		/* Some transfer arrives (another order than they were asked in). */
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		cr_assert_gt(W.nxfers, 0);
		arrive((int)(rng % (uint64_t)W.nxfers));
		done = 0;
		for (uint32_t k = 0; k < N; k++)
			done += bit_get(W.avail, k);
	}
	for (uint32_t k = 0; k < N; k++)
		cr_assert_geq(picked[k], 1, "chunk %u never asked", k);
	cr_assert_gt(copies, 0, "the end of the run should have used endgame");
	/* At most one more copy of each chunk in flight when endgame began (4 pipelines of 4). */
	cr_assert_leq(copies, 4 * 4, "endgame copies only at the very end");
}

/* ---- The writable working set: cold first, hot last -------------------- */

/* The source's VM changed chunk c n times, the last at tick t. */
static void changed(uint32_t c, uint8_t n, uint32_t t)
{
	W.changes[c] = n;
	W.changed_tick[c] = t;
}

Test(picker, hot_is_how_often_and_how_recently)
{
	struct pick_view v;

	W.now_tick = 100;
	changed(1, 1, 95);  /* once, 0.5 s ago: hot for 1 s */
	changed(2, 1, 85);  /* once, 1.5 s ago: cooled */
	changed(3, 5, 70);  /* 5 times, 3 s ago: hot for 5 s */
	changed(4, 200, 5); /* very often, 9.5 s ago: at most 8 s */
	v = view();
	cr_assert(!pick_is_hot(&v, 0), "never changed");
	cr_assert(pick_is_hot(&v, 1));
	cr_assert(!pick_is_hot(&v, 2));
	cr_assert(pick_is_hot(&v, 3));
	cr_assert(!pick_is_hot(&v, 4));
}

Test(picker, hot_chunks_wait_behind_every_cold_one)
{
	struct speer *src = peer(0, 1, 0, 40);
	uint32_t picked[40];
	int n, k;

	W.defer_hot = 1;
	W.now_tick = 50;
	want(0, 40);
	for (uint32_t c = 0; c < 8; c++)
		changed(c, 3, 49); /* 0..7: the VM keeps writing them */
	W.holders[3] = 0;          /* rarest, but hot: still last */
	n = 0;
	for (k = 0; k < 40; k++) {
		long c = next(src);

		if (c < 0)
			break;
		picked[n++] = (uint32_t)c;
		start(src, (uint32_t)c, WIRE_PRIO_BACKGROUND);
		cr_assert_geq(c, 8, "hot chunk %ld asked for while cold ones are wanted", c);
	}
	cr_assert_eq(n, 32 > (int)(pick_pipeline_cap(&src->pk) / CHUNK)
	                    ? (int)(pick_pipeline_cap(&src->pk) / CHUNK)
	                    : 32);
	/* All cold ones picked and arrived; until the last arrives, no hot one. */
	while (W.nxfers > 1)
		arrive(0);
	for (; n < 32; n++) {
		long c = next(src);

		cr_assert_geq(c, 8);
		start(src, (uint32_t)c, WIRE_PRIO_BACKGROUND);
		if (W.nxfers > 1)
			arrive(0);
	}
	cr_assert_eq(next(src), -1, "a hot chunk while a cold one is on its way");
	while (W.nxfers > 0)
		arrive(0);
	/* Now the hot ones. */
	for (k = 0; k < 8; k++) {
		long c = next(src);

		cr_assert(c >= 0 && c < 8);
		start(src, (uint32_t)c, WIRE_PRIO_BACKGROUND);
		arrive(W.nxfers - 1);
	}
	(void)picked;
}

Test(picker, no_hot_chunk_while_pages_are_unasked)
{
	struct speer *src = peer(0, 1, 0, 4);

	W.defer_hot = 1;
	W.now_tick = 10;
	W.pages_unasked = 1; /* a page not asked for yet may name cold chunks */
	want(0, 4);
	for (uint32_t c = 0; c < 4; c++)
		changed(c, 1, 10);
	cr_assert_eq(next(src), -1);
	W.pages_unasked = 0;
	cr_assert_geq(next(src), 0);
}

Test(picker, nothing_is_deferred_after_the_freeze_or_with_write_through)
{
	struct speer *src = peer(0, 1, 0, 10);

	W.defer_hot = 0; /* final generation (postcopy) or write-through */
	W.now_tick = 10;
	want(0, 10);
	for (uint32_t c = 0; c < 10; c++)
		changed(c, 4, 10);
	W.holders[7] = 0;
	cr_assert_eq(next(src), 7, "rarest first, hot or not");
}

Test(picker, a_cooled_chunk_is_cold_again)
{
	struct speer *src = peer(0, 1, 0, 2);

	W.defer_hot = 1;
	want(0, 2);
	changed(0, 2, 10);
	W.holders[0] = 0;
	W.now_tick = 20;                     /* 1 s after: still hot (2 changes: 2 s) */
	start(src, 1, WIRE_PRIO_BACKGROUND); /* chunk 1 (cold) on its way */
	cr_assert_eq(next(src), -1);
	W.now_tick = 31; /* 2.1 s after */
	cr_assert_eq(next(src), 0);
}
