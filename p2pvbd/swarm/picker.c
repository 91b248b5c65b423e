/* SPDX-License-Identifier: ISC */
/*
 * swarm/picker: the piece picker, as pure policy: which chunk to ask which
 * peer for, and when. Faults first, then readahead, then rarest first in
 * the background, endgame last; the source's upload is kept for what only
 * it has.
 */
#include "swarm_int.h"

/*
 * Background requests outstanding to one peer: what it delivers in
 * SWARM_PIPELINE_MS at its measured rate, at least SWARM_INFLIGHT_MIN and at
 * most SWARM_INFLIGHT_MAX. Deep enough to keep its link busy across a round
 * trip; shallow, so that a slow peer holds few chunks and the rarest-first
 * choice is made late, with fresh have-maps.
 */
#define SWARM_PIPELINE_MS  500
#define SWARM_INFLIGHT_MIN (1024u * 1024u)

/*
 * The picker decides; the swarm acts. Its functions read the want list, a
 * pick_view of the swarm's chunk state and transfers, and each peer's
 * pick_peer (never its connection): they send nothing and touch no file,
 * so that the policy can be tested alone. In order of precedence: the
 * VM's faults (pick_fault), readahead hints (pick_readahead), rarest first
 * in the background (pick_background), endgame; a destination's HAVE may
 * take a request back from the source (pick_offload).
 */

/* A number in [0, n) (n > 0), for spreading choices; not for secrets. */
static uint32_t rand_below(struct pick_want *w, uint32_t n)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return (uint32_t)((w->rng >> 11) % n);
}

void pick_want_push(struct pick_want *w, uint32_t c)
{
	w->list = xgrow(w->list, &w->cap, w->n, sizeof(*w->list), 1024);
	w->list[w->n++] = c;
}

/* Chunk c needs no fetching: readable, the VM's own, in flight or being verified. */
static int settled_or_busy(const struct pick_view *v, uint32_t c)
{
	return bit_get(v->avail, c) || bit_get(v->local, c) || bit_get(v->verifying, c) ||
	       bit_get(v->fetching, c);
}

/* Chunk c's entry is known: its page of the chunk table is loaded. */
static int entry_known(const struct pick_view *v, uint32_t c)
{
	return v->entries[c / MANIFEST_PAGE_ENTRIES] != NULL;
}

/* The transfer of chunk from sp (NULL: from anyone), or -1. */
static int xfer_index(const struct pick_view *v, uint32_t chunk, const struct speer *sp)
{
	for (int i = 0; i < v->nxfers; i++)
		if (v->xfers[i].chunk == chunk && (sp == NULL || v->xfers[i].from == sp))
			return i;
	return -1;
}

uint64_t pick_pipeline_cap(const struct pick_peer *p)
{
	double want = p->rate * SWARM_PIPELINE_MS / (double)MS_PER_S;

	if (want < SWARM_INFLIGHT_MIN)
		return SWARM_INFLIGHT_MIN;
	if (want > SWARM_INFLIGHT_MAX)
		return SWARM_INFLIGHT_MAX;
	return (uint64_t)want;
}

/* Drop the want entries that need no fetching any more (a fault, the VM or a copy got them). */
static void want_compact(struct pick_want *w, const struct pick_view *v)
{
	uint32_t j = 0;

	for (uint32_t i = 0; i < w->n; i++)
		if (!settled_or_busy(v, w->list[i]))
			w->list[j++] = w->list[i];
	w->n = j;
	w->dead = 0;
}

int pick_is_hot(const struct pick_view *v, uint32_t c)
{
	uint32_t n;

	if (v->changes == NULL || v->changes[c] == 0)
		return 0;
	n = v->changes[c] < SWARM_HOT_CHANGES_MAX ? v->changes[c] : SWARM_HOT_CHANGES_MAX;
	return (uint64_t)(v->now_tick - v->changed_tick[c]) * SWARM_HEAT_TICK_MS <
	       (uint64_t)n * SWARM_HOT_MS;
}

/* A transfer of a chunk that is not hot is on its way. */
static int cold_in_flight(const struct pick_view *v)
{
	for (int i = 0; i < v->nxfers; i++)
		if (!pick_is_hot(v, v->xfers[i].chunk))
			return 1;
	return 0;
}

/*
 * Rarest first: of the wanted chunks that a peer has (have) and nobody is
 * fetching, one held by the fewest connected peers; among equals, the first
 * after a random start, so that destinations pick different chunks. Cold
 * before hot: with v->defer_hot, a hot chunk (the writable working set,
 * which the source's VM keeps changing) is asked for only once no cold one
 * is wanted or on its way, and no page of the chunk table is unasked (it may
 * name more cold ones). Returns its index in w or -1; *live says whether any
 * wanted chunk is still unrequested.
 */
static long pick_rarest(struct pick_want *w, const struct pick_view *v, const uint8_t *have,
                        int *live)
{
	uint32_t n = w->n, start, best_n[2] = {UINT32_MAX, UINT32_MAX};
	long best[2] = {-1, -1}; /* [0] cold, [1] hot */
	int cold_wanted = 0;

	*live = 0;
	if (n == 0)
		return -1;
	start = rand_below(w, n);
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = start + k < n ? start + k : start + k - n, c = w->list[i];
		int hot;

		if (settled_or_busy(v, c)) {
			w->dead++;
			continue;
		}
		*live = 1;
		hot = v->defer_hot && pick_is_hot(v, c);
		cold_wanted |= !hot;
		if (!bit_get(have, c) || !entry_known(v, c))
			continue;
		if (v->holders[c] < best_n[hot]) {
			best_n[hot] = v->holders[c];
			best[hot] = (long)i;
			if (!hot && best_n[0] <= 1)
				break; /* only this peer has it: none is rarer */
		}
	}
	if (best[0] >= 0 || best[1] < 0)
		return best[0];
	if (cold_wanted || v->pages_unasked || cold_in_flight(v))
		return -1; /* the hot ones wait behind the cold ones */
	return best[1];
}

/*
 * Endgame: nothing is left to ask for, but chunks are still on their way.
 * Ask sp too for the one (that it has) with the most blocks missing, unless
 * it is being fetched twice already; the first copy to arrive wins and the
 * other is cancelled. A slow or stalled peer cannot hold up the finish.
 */
static int pick_endgame(const struct pick_view *v, const struct speer *sp, uint32_t *chunk)
{
	int best = -1, best_missing = 0;

	for (int i = 0; i < v->nxfers; i++) {
		const struct xfer *x = &v->xfers[i];
		int copies = 0, missing = __builtin_popcountll(x->blocks_missing);

		if (x->from == sp || !bit_get(sp->pk.have, x->chunk) || missing <= best_missing)
			continue;
		for (int k = 0; k < v->nxfers; k++)
			copies += v->xfers[k].chunk == x->chunk;
		if (copies >= 2 || xfer_index(v, x->chunk, sp) >= 0)
			continue;
		best = i;
		best_missing = missing;
	}
	if (best < 0)
		return -1;
	*chunk = v->xfers[best].chunk;
	return 0;
}

int pick_background(struct pick_want *w, const struct pick_view *v, struct speer *sp, uint64_t now,
                    uint32_t *chunk)
{
	struct pick_peer *p = &sp->pk;
	int live;
	long i;

	if (p->busy_until_ns != 0) {
		if (now < p->busy_until_ns)
			return -1;
		p->busy_until_ns = 0;
	}
	if (p->inflight_bytes >= pick_pipeline_cap(p) || v->nxfers >= SWARM_XFER_MAX ||
	    v->nverifying >= SWARM_VERIFY_MAX)
		return -1;
	/* Before the pick: compacting moves the entries its index points into. */
	if (w->dead > w->n / 2 + 64)
		want_compact(w, v);
	i = pick_rarest(w, v, p->have, &live);
	if (i >= 0) {
		*chunk = w->list[i];
		w->list[i] = w->list[--w->n];
		return 0;
	}
	if (live || v->pages_unasked)
		return -1;
	return pick_endgame(v, sp, chunk);
}

void pick_fill_order(struct speer **peers, int n)
{
	struct speer *sources[SWARM_PEERS_MAX];
	int j = 0, ns = 0;

	/* A stable partition: the destinations in their order, then the source. */
	for (int i = 0; i < n; i++)
		if (peers[i]->pk.is_source)
			sources[ns++] = peers[i];
		else
			peers[j++] = peers[i];
	for (int i = 0; i < ns; i++)
		peers[j++] = sources[i];
}

struct speer *pick_peer_for(struct speer *const *peers, int n, uint32_t c)
{
	struct speer *best = NULL;

	for (int i = 0; i < n; i++) {
		struct speer *sp = peers[i];

		if (!bit_get(sp->pk.have, c))
			continue;
		if (best == NULL || (sp->pk.is_source && !best->pk.is_source) ||
		    (sp->pk.is_source == best->pk.is_source &&
		     sp->pk.inflight_bytes < best->pk.inflight_bytes))
			best = sp;
	}
	return best;
}

enum pick_act pick_fault(const struct pick_view *v, uint32_t c, uint8_t prio, int *xfer)
{
	int i;

	if (bit_get(v->avail, c) || bit_get(v->local, c) || bit_get(v->verifying, c))
		return PICK_NONE;
	if (!entry_known(v, c))
		return PICK_PAGE;
	i = xfer_index(v, c, NULL);
	if (i >= 0) {
		if (v->xfers[i].prio >= prio)
			return PICK_NONE;
		*xfer = i;
		return PICK_RAISE;
	}
	if (v->nxfers >= SWARM_XFER_MAX)
		return PICK_NONE;
	return PICK_START;
}

int pick_readahead(const struct pick_view *v, uint32_t c)
{
	return !settled_or_busy(v, c) && entry_known(v, c) && v->nxfers < SWARM_XFER_MAX;
}

int pick_offload(const struct pick_view *v, uint32_t c)
{
	for (int i = 0; i < v->nxfers; i++) {
		const struct xfer *x = &v->xfers[i];

		if (x->chunk == c && x->from->pk.is_source && x->prio == WIRE_PRIO_BACKGROUND &&
		    x->blocks_missing == xfer_all_blocks(x->len))
			return i;
	}
	return -1;
}
