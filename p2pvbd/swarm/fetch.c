/* SPDX-License-Identifier: ISC */
/*
 * swarm/fetch: a destination fetching its volume. The signed root and the
 * pages of the chunk table, the peers' have-maps, scheduling requests (it
 * asks picker.c and acts on its decisions), completion and our receipt.
 */
#include "swarm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tclient.h"

static void fetch_check_complete(struct swarm *sw);

/* Peer sp has chunk c (from its have-map or a HAVE). */
static void have_set(struct swarm *sw, struct speer *sp, uint32_t c)
{
	if (bit_get(sp->pk.have, c))
		return;
	bit_set(sp->pk.have, c);
	sp->nhave++;
	if (sw->chunks.holders[c] < UINT8_MAX)
		sw->chunks.holders[c]++;
}

/* sp is gone or said it lacks c after all. */
void have_clear(struct swarm *sw, struct speer *sp, uint32_t c)
{
	if (!bit_get(sp->pk.have, c))
		return;
	bit_clear(sp->pk.have, c);
	sp->nhave--;
	if (sw->chunks.holders[c] > 0)
		sw->chunks.holders[c]--;
}

/*
 * Page pg is no longer asked for, loaded or done: its request was lost (its
 * peer left, or the answer was of another generation), or a newer root or
 * delta changed it. The window asks for it again, in order.
 */
void page_unask(struct swarm *sw, uint32_t pg)
{
	switch (sw->pages.status[pg]) {
	case PAGE_ASKED:
		sw->pages.held--;
		break;
	case PAGE_LOADED:
		free(sw->pages.entries[pg]);
		sw->pages.entries[pg] = NULL;
		sw->pages.held--;
		break;
	case PAGE_DONE:
		sw->pages.done--;
		break;
	default:
		break;
	}
	sw->pages.status[pg] = PAGE_NONE;
	sw->pages.from[pg] = NULL;
	sw->pages.left[pg] = 0;
	if (pg < sw->pages.next)
		sw->pages.next = pg;
}

void page_done(struct swarm *sw, uint32_t page)
{
	free(sw->pages.entries[page]);
	sw->pages.entries[page] = NULL;
	sw->pages.status[page] = PAGE_DONE;
	sw->pages.held--;
	sw->pages.done++;
}

/*
 * P2PVBD_CHECK (the model test sets it): the incremental page counts must
 * match the chunk bitmaps after every event; a mismatch aborts at once,
 * naming the event, instead of showing later as a volume that never
 * completes. A loaded page counts the chunks not yet available; a done page
 * has all of them.
 */
void check_pages(struct swarm *sw, const char *after)
{
	uint32_t done = 0;

	if (!sw->check || !sw->have_root || sw->pages.status == NULL)
		return;
	for (uint32_t pg = 0; pg < sw->root.page_count; pg++) {
		uint32_t n = manifest_page_len(&sw->root, pg), missing = 0;

		if (sw->pages.status[pg] != PAGE_LOADED && sw->pages.status[pg] != PAGE_DONE)
			continue;
		for (uint32_t i = 0; i < n; i++)
			if (!bit_get(sw->chunks.avail, pg * MANIFEST_PAGE_ENTRIES + i))
				missing++;
		if (sw->pages.status[pg] == PAGE_DONE) {
			done++;
			if (missing == 0)
				continue;
			log_error(
			    "check after %s: page %u is done but %u of its chunks are missing",
			    after, pg, missing);
			abort();
		}
		if (missing != sw->pages.left[pg]) {
			log_error("check after %s: page %u counts %u chunks missing, %u are", after,
			          pg, sw->pages.left[pg], missing);
			abort();
		}
	}
	if (done != sw->pages.done) {
		log_error("check after %s: %u pages done, counted %u", after, done, sw->pages.done);
		abort();
	}
}

/* Prefix of the sidecar files of the output (swarm_opts.sidecar_path). */
static const char *sidecar_of(const struct swarm *sw)
{
	return sw->o.sidecar_path ? sw->o.sidecar_path : sw->o.out_path;
}

static void root_adopt(struct swarm *sw, struct speer *sp, struct manifest_root *r)
{
	char size[32];

	sw->root = *r; /* takes ownership of r->page_hash */
	memset(r, 0, sizeof(*r));
	if (store_open_at(&sw->store, sw->o.out_path, sidecar_of(sw), sw->root.volume_id,
	                  sw->root.image_size, sw->root.chunk_size, sw->o.store_flags) != 0) {
		finish_run(sw, -1);
		return;
	}
	sw->store_open = 1;
	sw->have_root = 1;
	if (store_note_root(&sw->store, sw->root.generation) != 0) {
		finish_run(sw, -1);
		return;
	}
	{
		char *path = xasprintf("%s.p2pvbd-pages", sidecar_of(sw));

		sw->pages.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (sw->pages.fd < 0)
			log_warn("cannot open %s: %s; not serving pages", path, strerror(errno));
		free(path);
	}
	sw->st.chunks_total = sw->root.chunk_count;
	sw->pages.entries = xcalloc(sw->root.page_count, sizeof(*sw->pages.entries));
	sw->pages.status = xcalloc(sw->root.page_count, 1);
	sw->pages.left = xcalloc(sw->root.page_count, sizeof(uint32_t));
	sw->pages.seen = bitmap_new(sw->root.page_count);
	sw->pages.from = xcalloc(sw->root.page_count, sizeof(struct speer *));
	sw->serve.map = bitmap_new(sw->root.chunk_count);
	sw->serve.sent_count = xcalloc(sw->root.chunk_count, 1);
	sw->chunks.avail = bitmap_new(sw->root.chunk_count);
	sw->chunks.zeroed = bitmap_new(sw->root.chunk_count);
	sw->chunks.local = bitmap_new(sw->root.chunk_count);
	sw->pipe.verifying = bitmap_new(sw->root.chunk_count);
	sw->gens.stale = bitmap_new(sw->root.chunk_count);
	sw->gens.changed = bitmap_new(sw->root.chunk_count);
	sw->gens.changes = xcalloc(sw->root.chunk_count, 1);
	sw->gens.changed_tick = xcalloc(sw->root.chunk_count, sizeof(uint32_t));
	sw->gens.heat_t0_ns = now_ns();
	sw->faults.urgent = bitmap_new(sw->root.chunk_count);
	sw->pipe.fetching = bitmap_new(sw->root.chunk_count);
	sw->chunks.holders = xcalloc(sw->root.chunk_count, 1);
	if (manifest_root_encode(&sw->root, &sw->serve.root_blob, &sw->serve.root_blob_len) != 0)
		fatal("cannot encode the manifest root");
	for (struct speer *o = sw->conn.peers; o; o = o->next)
		if (o->wants_root && peer_is_ready(o->p))
			send_root_and_map(sw, o);
	if (sw->exp.ready_cb != NULL)
		sw->exp.ready_cb(sw->exp.ready_cb_arg);
	log_info("volume: %s in %u chunks of %u KiB, generation %llu (from %s)",
	         fmt_bytes(sw->root.image_size, size, sizeof(size)), sw->root.chunk_count,
	         sw->root.chunk_size / 1024, (unsigned long long)sw->root.generation,
	         peer_name(sp->p));
}

/*
 * r (verified) is older than generation floor, which we verified before:
 * never go back to it (DESIGN rule 7). A source that does so lost its
 * generation record (PROTOCOL.md §9.4); a destination is merely behind.
 */
static void root_log_older(struct speer *sp, const struct manifest_root *r, uint64_t floor)
{
	if (peer_is_source(sp->p))
		log_error("the source (%s) offers generation %llu, older than generation %llu "
		          "verified here: not taking it (was the seed restarted without its "
		          "generation record, IMAGE.p2pvbd-seed?)",
		          peer_name(sp->p), (unsigned long long)r->generation,
		          (unsigned long long)floor);
	else
		log_info("peer %s holds generation %llu, older than generation %llu verified "
		         "here: not taking it",
		         peer_name(sp->p), (unsigned long long)r->generation,
		         (unsigned long long)floor);
}

void on_root(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	struct manifest_root r;
	uint64_t floor;

	if (manifest_root_decode(m->u.blob.data, m->u.blob.len, &r) != 0) {
		peer_close_error(sp->p, WIRE_E_PROTOCOL, "malformed manifest root");
		return;
	}
	if (manifest_root_verify(&r, sw->o.source_key) != 0) {
		manifest_root_free(&r);
		log_error("peer %s sent a manifest whose signature does not verify against the "
		          "source key: refusing it",
		          peer_name(sp->p));
		peer_close_error(sp->p, WIRE_E_AUTH, "manifest signature does not verify");
		return;
	}
	if (memcmp(r.volume_id, sw->o.volume_id, MANIFEST_ID_LEN) != 0) {
		manifest_root_free(&r);
		peer_close_error(sp->p, WIRE_E_WRONG_VOLUME, "manifest of another volume");
		return;
	}
	if (sw->have_root) {
		if (r.generation > sw->root.generation) {
			root_catch_up(sw, sp, &r);
		} else if (r.generation < sw->root.generation) {
			/*
			 * It is behind: our newest delta tells it (and it asks us for
			 * our root). A source behind us is never followed back; what it
			 * serves of an older generation is refused by generation.
			 */
			struct wire_msg d = {.type = WIRE_DELTA};

			if (peer_is_source(sp->p))
				root_log_older(sp, &r, sw->root.generation);
			if (sw->gens.last_delta != NULL) {
				d.u.blob.data = sw->gens.last_delta;
				d.u.blob.len = (uint32_t)sw->gens.last_delta_len;
				peer_send(sp->p, &d);
			}
		} else if (memcmp(r.root_hash, sw->root.root_hash, VCRYPTO_HASH_LEN) != 0) {
			/* Two signed roots of one generation: the source was restarted
			 * with the same volume id; nothing to reconcile. */
			manifest_root_free(&r);
			peer_close_error(sp->p, WIRE_E_GENERATION,
			                 "peer holds another root of generation %llu",
			                 (unsigned long long)sw->root.generation);
			return;
		}
		manifest_root_free(&r);
		if (sp->root_seen) {
			fetch_schedule(sw);
			return; /* asked again (we were behind): its have-map follows */
		}
	} else {
		if (store_peek_root_gen(sidecar_of(sw), sw->o.volume_id, &floor) != 0) {
			manifest_root_free(&r);
			finish_run(sw, -1);
			return;
		}
		if (r.generation < floor) {
			/* A restart after we verified a later one: wait for a newer root. */
			root_log_older(sp, &r, floor);
			peer_close_error(
			    sp->p, WIRE_E_GENERATION, "generation %llu is older than %llu",
			    (unsigned long long)r.generation, (unsigned long long)floor);
			manifest_root_free(&r);
			return;
		}
		root_adopt(sw, sp, &r);
		if (sw->finished)
			return;
	}
	sp->root_seen = 1;
	if (sp->pk.have == NULL)
		sp->pk.have = bitmap_new(sw->root.chunk_count);
	fetch_schedule(sw);
}

void on_have_map(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	uint32_t first = m->u.have_map.first, count = m->u.have_map.count;

	if (sp->pk.have == NULL)
		return; /* sent before its ROOT reached us: ignored, a later HAVE fixes it */
	if ((uint64_t)first + count > sw->root.chunk_count) {
		peer_close_error(sp->p, WIRE_E_RANGE, "have-map beyond the volume");
		return;
	}
	for (uint32_t i = 0; i < count; i++)
		if (bit_get(m->u.have_map.bits, i))
			have_set(sw, sp, first + i);
	fetch_schedule(sw);
}

/* Chunk c's bytes in the image are final (fetched, zero, resumed or the VM's). */
void avail_set(struct swarm *sw, uint32_t c)
{
	if (bit_get(sw->chunks.avail, c))
		return;
	if (bit_get(sw->faults.urgent, c))
		fault_settled(sw, c);
	bit_set(sw->chunks.avail, c);
	sw->chunks.avail_bytes += manifest_chunk_len(&sw->root, c);
}

/* Chunk c can be read from the image now: tell the export. */
void chunk_now_available(struct swarm *sw, uint32_t c)
{
	avail_set(sw, c);
	bit_clear(sw->faults.urgent, c);
	chunk_wake(sw, c);
}

void on_page(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	uint32_t page = m->u.page.page;
	struct manifest_entry *e;
	uint32_t n, left = 0;

	if (!sw->have_root || page >= sw->root.page_count || sw->pages.status[page] != PAGE_ASKED ||
	    sw->pages.from[page] != sp) {
		peer_close_error(sp->p, WIRE_E_PROTOCOL, "unrequested page %u", page);
		return;
	}
	e = xmalloc(MANIFEST_PAGE_ENTRIES * sizeof(*e));
	if (manifest_page_decode(&sw->root, page, m->u.page.data, m->u.page.len, e) != 0) {
		free(e);
		page_unask(sw, page);
		if (m->u.page.root_gen != sw->root.generation) {
			/* Of another generation (it crossed a delta): ask again. */
			log_debug("peer %s: page %u of generation %llu, we hold %llu",
			          peer_name(sp->p), page, (unsigned long long)m->u.page.root_gen,
			          (unsigned long long)sw->root.generation);
			if (m->u.page.root_gen > sw->root.generation) {
				struct wire_msg g = {.type = WIRE_GET_ROOT};

				peer_send(sp->p, &g);
			}
			fetch_schedule(sw);
			return;
		}
		log_error("peer %s sent page %u of the chunk table that does not match the signed "
		          "root: dropping the peer",
		          peer_name(sp->p), page);
		/* A forged page is no accident: never ask this address again. */
		if (sp->addr >= 0)
			sw->conn.addrs[sp->addr].dead = 1;
		peer_close_error(sp->p, WIRE_E_BAD_DATA, "page %u does not verify", page);
		return;
	}
	if (sw->pages.fd >= 0 &&
	    write_at(sw->pages.fd, m->u.page.data, m->u.page.len,
	             (uint64_t)page * MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN) != 0)
		log_debug("cannot keep page %u: %s", page, strerror(errno));
	sw->pages.entries[page] = e;
	sw->pages.status[page] = PAGE_LOADED;
	sw->pages.from[page] = NULL;
	n = manifest_page_len(&sw->root, page);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = page * MANIFEST_PAGE_ENTRIES + i;
		enum store_state s = store_state_of(&sw->store, c);
		/* Identity is content (DESIGN rule 7): what the image holds of c is
		 * the chunk of this entry only if it was verified against its hash;
		 * the generation alone proves nothing (a restarted source). */
		int same = store_holds(&sw->store, c, e[i].hash);

		if (same && store_gen_of(&sw->store, c) != e[i].gen)
			store_relabel(&sw->store, c, e[i].gen);
		if (s == STORE_LOCAL || bit_get(sw->chunks.local, c)) {
			/* The local VM's data: never fetched again. */
			bit_set(sw->chunks.local, c);
			avail_set(sw, c);
		} else if (bit_get(sw->chunks.avail, c) && same) {
			/* Held already (the page came back after a delta changed another chunk). */
		} else if (bit_get(sw->pipe.verifying, c)) {
			left++; /* verify_done settles it against this entry */
		} else if (e[i].flags & MANIFEST_F_ZERO) {
			sw->st.chunks_zero++;
			if (!(s == STORE_ZERO && same) &&
			    store_put_zero(&sw->store, c, e[i].gen, e[i].hash) != 0) {
				finish_run(sw, -1);
				return;
			}
			chunk_now_available(sw, c);
			if (!bit_get(sw->chunks.zeroed, c)) {
				bit_set(sw->chunks.zeroed, c);
				sw->chunks.zeroed_bytes += manifest_chunk_len(&sw->root, c);
			}
			/* In the have-map too, so that a complete map says "ask me for
			 * pages"; but no HAVE: nobody requests a zero chunk, and a sparse
			 * volume would send millions of them. Except for one a delta
			 * changed: peers cleared their bit for it. */
			serve_add(sw, c, e[i].gen, bit_get(sw->gens.changed, c));
			bit_clear(sw->gens.changed, c);
		} else if (s == STORE_PRESENT && same) {
			sw->st.chunks_resumed++;
			serve_add(sw, c, e[i].gen, 1);
			chunk_now_available(sw, c);
		} else {
			if (sw->pipe.basis_fd >= 0) {
				sw->pipe.basis_q =
				    xgrow(sw->pipe.basis_q, &sw->pipe.basis_cap, sw->pipe.nbasis_q,
				          sizeof(*sw->pipe.basis_q), 1024);
				sw->pipe.basis_q[sw->pipe.nbasis_q++] = c;
			} else {
				pick_want_push(&sw->want, c);
			}
			left++;
		}
	}
	sw->pages.left[page] = left;
	if (!bit_get(sw->pages.seen, page)) {
		bit_set(sw->pages.seen, page);
		sw->pages.nseen++;
	}
	if (left == 0) {
		page_done(sw, page);
	} else {
		/* Faults that waited for this page can be requested now. */
		for (uint32_t i = 0; i < n; i++) {
			uint32_t c = page * MANIFEST_PAGE_ENTRIES + i;

			if (bit_get(sw->faults.urgent, c))
				fetch_urgent(sw, c);
		}
	}
	sw->last_progress_ns = now_ns();
	check_pages(sw, "a page load");
	fetch_schedule(sw);
}

void on_receipt_ack(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;

	if (m->u.error.code == WIRE_OK) {
		log_info("the source accepted our completion receipt");
		sw->st.receipt_acked = 1;
	} else {
		log_warn("the source refused our receipt: %.*s", (int)m->u.error.text_len,
		         m->u.error.text);
	}
	if (sw->complete && !sw->exp.keep_running)
		finish_run(sw, 0);
}

/*
 * Ask a peer for a page of the chunk table (the source if connected). 0 if
 * it was asked now or before; -1 if no peer can be asked yet (then
 * fetch_schedule tries again once one is ready).
 */
static int ask_page(struct swarm *sw, uint32_t page)
{
	struct wire_msg m = {.type = WIRE_GET_PAGE};
	struct speer *best = NULL;

	if (sw->pages.status[page] != PAGE_NONE)
		return 0;
	/*
	 * Pages come from the source, or else from a destination that holds the
	 * whole volume (a mirror): only those keep every page (§7.1).
	 */
	for (struct speer *sp = sw->conn.peers; sp && best == NULL; sp = sp->next)
		if (peer_is_ready(sp->p) && peer_is_source(sp->p) && sp->root_seen)
			best = sp;
	for (struct speer *sp = sw->conn.peers; sp && best == NULL; sp = sp->next)
		if (peer_is_ready(sp->p) && sp->root_seen && sp->pk.have != NULL &&
		    sp->nhave == sw->root.chunk_count)
			best = sp;
	if (best == NULL)
		return -1;
	m.u.get_page.page = page;
	if (peer_send(best->p, &m) != 0)
		return -1;
	sw->pages.status[page] = PAGE_ASKED;
	sw->pages.from[page] = best;
	sw->pages.held++;
	return 0;
}

/* Ask for pages in order while the window has room. */
static void ask_pages(struct swarm *sw)
{
	while (sw->pages.held < SWARM_PAGE_WINDOW && sw->pages.next < sw->root.page_count) {
		if (ask_page(sw, sw->pages.next) != 0)
			return;
		sw->pages.next++;
	}
}

/* The picker's view of the swarm now (pick_view). */
/* The heat clock (gens.changed_tick): SWARM_HEAT_TICK_MS ticks since the root came, from 1. */
uint32_t heat_now(const struct swarm *sw)
{
	return (uint32_t)((now_ns() - sw->gens.heat_t0_ns) / (SWARM_HEAT_TICK_MS * NS_PER_MS)) + 1;
}

struct pick_view pick_view_of(const struct swarm *sw)
{
	struct pick_view v = {
	    .avail = sw->chunks.avail,
	    .local = sw->chunks.local,
	    .verifying = sw->pipe.verifying,
	    .fetching = sw->pipe.fetching,
	    .holders = sw->chunks.holders,
	    .entries = sw->pages.entries,
	    .xfers = sw->pipe.xfers,
	    .nxfers = sw->pipe.nxfers,
	    .nverifying = sw->pipe.nverifying,
	    .pages_unasked = sw->pages.next < sw->root.page_count,
	    .changes = sw->gens.changes,
	    .changed_tick = sw->gens.changed_tick,
	    .now_tick = heat_now(sw),
	    /* After the freeze everything left is postcopy; write-through
	     * writes wait for changed chunks: nothing is deferred then. */
	    .defer_hot = !root_final(sw) && !(sw->root.flags & MANIFEST_ROOT_F_WRITE_THROUGH),
	};

	return v;
}

/*
 * The peers that may be asked for chunks (authenticated, our root known to
 * them), in list order, into peers: SWARM_PEERS_MAX of them at most, as
 * no more are ever connected.
 */
static int ready_peers(struct swarm *sw, struct speer **peers)
{
	int n = 0;

	for (struct speer *sp = sw->conn.peers; sp && n < SWARM_PEERS_MAX; sp = sp->next)
		if (sp->root_seen && peer_is_ready(sp->p))
			peers[n++] = sp;
	return n;
}

/* The peer to ask for chunk c ahead of the background (pick_peer_for), or NULL. */
struct speer *best_peer_for(struct swarm *sw, uint32_t c)
{
	struct speer *peers[SWARM_PEERS_MAX];

	return pick_peer_for(peers, ready_peers(sw, peers), c);
}

/* Fill one peer's pipeline, up to its rate-based bound, with chunks it has. */
static void fill_pipeline(struct swarm *sw, struct speer *sp)
{
	uint64_t now = now_ns();
	uint32_t c;

	for (;;) {
		struct pick_view v = pick_view_of(sw);

		if (pick_background(&sw->want, &v, sp, now, &c) != 0)
			return;
		xfer_start(sw, sp, c, WIRE_PRIO_BACKGROUND);
	}
}

/*
 * Fetch chunk c ahead of everything else (a fault). Requests go out at once,
 * past the in-flight bound, at URGENT priority (or BACKGROUND with
 * --no-boost, the control that behaves like a single FIFO).
 */
void fetch_urgent(struct swarm *sw, uint32_t c)
{
	uint8_t prio = sw->o.no_boost ? WIRE_PRIO_BACKGROUND : WIRE_PRIO_URGENT;
	struct pick_view v = pick_view_of(sw);
	struct speer *sp;
	int i;

	switch (pick_fault(&v, c, prio, &i)) {
	case PICK_NONE:
		return; /* a full transfer table: retried from fetch_schedule */
	case PICK_PAGE:
		/* Out of the window's order; on_page requests c when it arrives. */
		ask_page(sw, c / MANIFEST_PAGE_ENTRIES);
		return;
	case PICK_RAISE:
		xfer_raise(&sw->pipe.xfers[i], prio);
		return;
	case PICK_START:
		sp = best_peer_for(sw, c);
		if (sp != NULL)
			xfer_start(sw, sp, c, prio);
		return;
	}
}

/*
 * Another destination now has chunk c: if we asked the source for it in the
 * background and nothing of it has arrived yet, take the request back (CANCEL)
 * and let the picker ask that destination instead (pick_offload).
 */
static void source_offload(struct swarm *sw, uint32_t c)
{
	struct pick_view v = pick_view_of(sw);
	int i = pick_offload(&v, c);

	if (i < 0)
		return;
	xfer_cancel(sw, &sw->pipe.xfers[i], 1);
	sw->st.source_offloads++;
}

void fetch_schedule(struct swarm *sw)
{
	if (sw->o.role != SWARM_FETCH || !sw->have_root || sw->finished)
		return;
	/* Faults first: prune the settled ones, (re)try the rest. */
	for (uint32_t i = 0; i < sw->faults.nlist;) {
		uint32_t c = sw->faults.list[i];

		if (!bit_get(sw->faults.urgent, c)) {
			sw->faults.list[i] = sw->faults.list[--sw->faults.nlist];
			continue;
		}
		fetch_urgent(sw, c);
		i++;
	}
	if (sw->pipe.nbasis_q > 0)
		basis_pump(sw);
	if (!sw->o.lazy) {
		struct speer *peers[SWARM_PEERS_MAX];
		int n;

		ask_pages(sw);
		n = ready_peers(sw, peers);
		pick_fill_order(peers, n);
		for (int i = 0; i < n; i++)
			fill_pipeline(sw, peers[i]);
	}
	check_pages(sw, "scheduling");
	fetch_check_complete(sw);
}

/* Peer sp announced a chunk (HAVE). */
void on_have(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	const struct manifest_entry *e;

	if (sp->pk.have == NULL || m->u.have.chunk >= sw->root.chunk_count)
		return;
	e = entry_of(sw, m->u.have.chunk);
	/* Of another generation than the one we know: of no use to us. */
	if (e != NULL ? m->u.have.gen != e->gen : m->u.have.gen > sw->root.generation)
		return;
	have_set(sw, sp, m->u.have.chunk);
	if (!peer_is_source(sp->p))
		source_offload(sw, m->u.have.chunk);
	if (bit_get(sw->gens.changed, m->u.have.chunk)) {
		/* Changed by the source's VM. Only where a write waits for it
		 * (write-through) is it worth more than the background: otherwise
		 * the picker takes it after the cold chunks (PROTOCOL.md §7.2). */
		bit_clear(sw->gens.changed, m->u.have.chunk);
		if (sw->root.flags & MANIFEST_ROOT_F_WRITE_THROUGH)
			swarm_fault(sw, m->u.have.chunk, 1);
	}
	fetch_schedule(sw);
}

/* Our signed receipt for the current generation, made once. */
static const uint8_t *receipt_blob(struct swarm *sw)
{
	struct manifest_receipt rc;

	if (!sw->receipts.made) {
		memset(&rc, 0, sizeof(rc));
		memcpy(rc.volume_id, sw->root.volume_id, MANIFEST_ID_LEN);
		rc.generation = sw->root.generation;
		memcpy(rc.root_hash, sw->root.root_hash, VCRYPTO_HASH_LEN);
		rc.timestamp = (uint64_t)time(NULL);
		manifest_receipt_sign(&rc, sw->o.identity, sw->receipts.key);
		manifest_receipt_encode(&rc, sw->receipts.blob);
		sw->receipts.made = 1;
	}
	return sw->receipts.blob;
}

/* Send the receipt to the source, if connected (trackers get it in fetch_check_complete). */
void send_receipt(struct swarm *sw)
{
	struct wire_msg m = {.type = WIRE_RECEIPT};

	m.u.blob.data = receipt_blob(sw);
	m.u.blob.len = MANIFEST_RECEIPT_LEN;
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if (peer_is_ready(sp->p) && peer_is_source(sp->p) && root_final(sw) &&
		    peer_send(sp->p, &m) == 0) {
			sw->receipts.sent = 1;
			log_info("sent completion receipt to the source (%s)", peer_name(sp->p));
			return;
		}
}

static void fetch_check_complete(struct swarm *sw)
{
	if (sw->complete || sw->pages.done < sw->root.page_count || sw->pipe.nxfers > 0 ||
	    sw->pipe.nverifying > 0)
		return;
	/* Everything is written: complete once the last of it is durable. */
	if (sw->pipe.committing || store_npending(&sw->store) > 0) {
		commit_start(sw);
		return;
	}
	sw->complete = 1;
	if (!root_final(sw)) {
		/* The source still writes: a receipt, and the end, wait for the final one. */
		log_info("volume complete at generation %llu; waiting for the source to freeze",
		         (unsigned long long)sw->root.generation);
		return;
	}
	log_info("volume complete and verified at generation %llu: %llu chunks fetched, %llu "
	         "already present, %llu zero",
	         (unsigned long long)sw->root.generation, (unsigned long long)sw->st.chunks_fetched,
	         (unsigned long long)sw->st.chunks_resumed, (unsigned long long)sw->st.chunks_zero);
	sw->receipts.deadline_ns = now_ns() + (uint64_t)SWARM_RECEIPT_WAIT_S * NS_PER_S;
	send_receipt(sw);
	for (int i = 0; i < sw->conn.ntrackers; i++) {
		tclient_completed(sw->conn.trackers[i]);
		tclient_post_receipt(sw->conn.trackers[i], receipt_blob(sw));
	}
}
