/* SPDX-License-Identifier: ISC */
/*
 * swarm/gens: generations at a destination (PROTOCOL.md §9). Deltas are
 * verified, applied and passed on; a newer root is caught up with; chunks a
 * delta changed become stale and are fetched again; peers behind get our
 * newest delta.
 */
#include "swarm_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * Chunk c changed at the source: what we hold of it, or are fetching, is of
 * an older generation. It is no longer read, served or counted as held by
 * anyone (a peer announces it again at the new generation). The local VM's
 * own chunks stay: its writes are never overwritten (DESIGN §4 rule 3).
 */
static void chunk_stale(struct swarm *sw, uint32_t c)
{
	if (bit_get(sw->chunks.local, c))
		return;
	xfer_cancel_chunk(sw, c);
	if (bit_get(sw->pipe.verifying, c))
		bit_set(sw->gens.stale, c); /* verify_done drops the result */
	if (bit_get(sw->serve.map, c)) {
		bit_clear(sw->serve.map, c);
		sw->serve.nchunks--;
	}
	if (bit_get(sw->chunks.zeroed, c)) {
		bit_clear(sw->chunks.zeroed, c);
		sw->chunks.zeroed_bytes -= manifest_chunk_len(&sw->root, c);
	}
	if (bit_get(sw->chunks.avail, c)) {
		bit_clear(sw->chunks.avail, c);
		sw->chunks.avail_bytes -= manifest_chunk_len(&sw->root, c);
	}
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if (sp->pk.have != NULL)
			have_clear(sw, sp, c);
}

/*
 * The zero chunk c (entry e) of a loaded page, changed by a delta, is
 * settled: written as zeros. Peers hear of it (HAVE), unlike the zero chunks
 * of a first page load: a delta cleared their have bit for it, and a peer
 * asks for pages only from one whose have-map is complete (§7.1). 0 or -1.
 */
int chunk_put_zero(struct swarm *sw, uint32_t c, const struct manifest_entry *e)
{
	uint32_t page = c / MANIFEST_PAGE_ENTRIES;

	if (store_put_zero(&sw->store, c, e->gen, e->hash) != 0)
		return -1;
	chunk_now_available(sw, c);
	bit_clear(sw->gens.changed, c);
	serve_add(sw, c, e->gen, 1);
	if (--sw->pages.left[page] == 0)
		page_done(sw, page);
	return 0;
}

/*
 * Page pg of the chunk table must be fetched again (a newer root changed
 * it, or a delta changed entries of a page we had let go). With all != 0
 * we do not know which of its chunks changed: all of them are taken out
 * until the page is back (on_page puts the unchanged ones back at once).
 */
static void page_reopen(struct swarm *sw, uint32_t pg, int all)
{
	uint32_t n = manifest_page_len(&sw->root, pg);

	if (all)
		for (uint32_t i = 0; i < n; i++)
			chunk_stale(sw, pg * MANIFEST_PAGE_ENTRIES + i);
	/* Not asked yet, or asked: the answer is checked against the new root. */
	if (sw->pages.status[pg] == PAGE_LOADED || sw->pages.status[pg] == PAGE_DONE)
		page_unask(sw, pg);
}

/* The root changed (a delta or a newer root): everything that depends on it follows. */
static void root_changed(struct swarm *sw, int was_final)
{
	if (store_note_root(&sw->store, sw->root.generation) != 0) {
		finish_run(sw, -1);
		return;
	}
	free(sw->serve.root_blob);
	if (manifest_root_encode(&sw->root, &sw->serve.root_blob, &sw->serve.root_blob_len) != 0)
		fatal("cannot encode the manifest root");
	if (sw->complete) {
		/* Complete again only at the new generation; a new receipt for it. */
		sw->complete = 0;
		sw->receipts.made = 0;
		sw->receipts.sent = 0;
		sw->receipts.warned = 0;
		sw->st.receipt_acked = 0;
	}
	sw->last_progress_ns = now_ns();
	if (root_final(sw) && !was_final)
		log_info("generation %llu is final: the source froze",
		         (unsigned long long)sw->root.generation);
	else if (!root_final(sw) && was_final)
		log_warn("generation %llu is not final: the source writes again",
		         (unsigned long long)sw->root.generation);
	/* Held requests of the export may go now (or chunks they read changed). */
	chunk_wake(sw, SWARM_ALL_CHUNKS);
	fetch_schedule(sw);
}

/* The pages of d that we hold must hash, with d's changes, to d's page hashes. */
static int delta_check_pages(struct swarm *sw, const struct manifest_delta *d)
{
	struct manifest_entry *tmp = NULL;
	uint32_t k = 0;
	int ok = 1;

	for (uint32_t i = 0; i < d->npages && ok; i++) {
		uint32_t pg = d->page[i], n;
		uint8_t h[VCRYPTO_HASH_LEN];

		if (pg >= sw->root.page_count)
			return -1;
		if (sw->pages.entries[pg] == NULL) {
			while (k < d->nchanges && d->changes[k].chunk / MANIFEST_PAGE_ENTRIES == pg)
				k++;
			continue;
		}
		n = manifest_page_len(&sw->root, pg);
		if (tmp == NULL)
			tmp = xmalloc(MANIFEST_PAGE_ENTRIES * sizeof(*tmp));
		memcpy(tmp, sw->pages.entries[pg], n * sizeof(*tmp));
		for (; k < d->nchanges && d->changes[k].chunk / MANIFEST_PAGE_ENTRIES == pg; k++)
			tmp[d->changes[k].chunk % MANIFEST_PAGE_ENTRIES] = d->changes[k].entry;
		manifest_entries_hash(tmp, n, h);
		ok = memcmp(h, d->page_hash[i], VCRYPTO_HASH_LEN) == 0;
	}
	free(tmp);
	return ok ? 0 : -1;
}

/* d is verified and sw->root is its new root: the chunks it names are stale. */
static void delta_adopt(struct swarm *sw, const struct manifest_delta *d)
{
	for (uint32_t k = 0; k < d->nchanges; k++) {
		uint32_t c = d->changes[k].chunk, pg = c / MANIFEST_PAGE_ENTRIES;
		const struct manifest_entry *e = &d->changes[k].entry;
		int was_held = bit_get(sw->chunks.avail, c) && !bit_get(sw->chunks.local, c);

		chunk_stale(sw, c);
		if (!bit_get(sw->chunks.local, c))
			bit_set(sw->gens.changed, c);
		if (sw->gens.changes[c] < UINT8_MAX)
			sw->gens.changes[c]++;
		sw->gens.changed_tick[c] = heat_now(sw);
		if (sw->pages.status[pg] != PAGE_LOADED) {
			if (!bit_get(sw->chunks.local, c))
				page_reopen(sw, pg,
				            0); /* a DONE page comes back for the new entry */
			continue;
		}
		sw->pages.entries[pg][c % MANIFEST_PAGE_ENTRIES] = *e;
		if (bit_get(sw->chunks.local, c))
			continue;
		if (was_held)
			sw->pages.left[pg]++;
		if (bit_get(sw->pipe.verifying, c))
			continue; /* verify_done looks at the new entry */
		if (e->flags & MANIFEST_F_ZERO) {
			if (chunk_put_zero(sw, c, e) != 0) {
				finish_run(sw, -1);
				return;
			}
		} else {
			/* Asked for first once someone has it (changed). */
			pick_want_push(&sw->want, c);
		}
	}
	/* Keep the pages file in step with the pages we hold. */
	for (uint32_t i = 0; i < d->npages && sw->pages.fd >= 0; i++) {
		uint32_t pg = d->page[i];

		if (sw->pages.entries[pg] == NULL)
			continue;
		manifest_entries_encode(sw->pages.entries[pg], manifest_page_len(&sw->root, pg),
		                        sw->serve.page_buf);
		if (write_at(sw->pages.fd, sw->serve.page_buf,
		             (size_t)manifest_page_len(&sw->root, pg) * MANIFEST_ENTRY_LEN,
		             (uint64_t)pg * MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN) != 0)
			log_debug("cannot keep page %u: %s", pg, strerror(errno));
	}
	check_pages(sw, "a delta");
}

static void root_broadcast(struct swarm *sw, const struct speer *from);

/* m to every ready peer but the source and except that knows the volume (our map or its root). */
static void send_to_volume_peers(struct swarm *sw, const struct speer *except,
                                 const struct wire_msg *m)
{
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if (sp != except && peer_is_ready(sp->p) && !peer_is_source(sp->p) &&
		    (sp->map_sent || sp->root_seen))
			peer_send(sp->p, m);
}

/* Our root is older than r (signed, same volume): take r; changed pages are fetched again. */
void root_catch_up(struct swarm *sw, struct speer *sp, struct manifest_root *r)
{
	int was_final = root_final(sw);

	log_info("peer %s holds generation %llu, we hold %llu: catching up", peer_name(sp->p),
	         (unsigned long long)r->generation, (unsigned long long)sw->root.generation);
	for (uint32_t pg = 0; pg < sw->root.page_count; pg++)
		if (memcmp(r->page_hash[pg], sw->root.page_hash[pg], VCRYPTO_HASH_LEN) != 0)
			page_reopen(sw, pg, 1);
	manifest_root_free(&sw->root);
	sw->root = *r; /* takes r->page_hash */
	memset(r, 0, sizeof(*r));
	free(sw->gens.last_delta);
	free(sw->live.carried); /* it does not lead to this root */
	sw->gens.last_delta = NULL;
	sw->gens.last_delta_len = 0;
	root_changed(sw, was_final);
	check_pages(sw, "a newer root");
	root_broadcast(sw, sp);
}

/*
 * We caught up from a ROOT: no DELTA leads our peers there (a restarted
 * source, §9.4), so they get the ROOT itself, except sp, which sent it. A
 * peer that holds it already ignores it; one behind catches up in turn.
 */
static void root_broadcast(struct swarm *sw, const struct speer *from)
{
	struct wire_msg m = {.type = WIRE_ROOT};

	if (sw->finished)
		return;
	m.u.blob.data = sw->serve.root_blob;
	m.u.blob.len = (uint32_t)sw->serve.root_blob_len;
	send_to_volume_peers(sw, from, &m);
}

/*
 * A DELTA (PROTOCOL.md §9): the next one is verified, applied and passed on
 * to our other peers; an older one (a replay, or one that reached us twice)
 * is ignored; a newer one means we missed some: we ask its sender for its
 * root. One that does not verify is a forgery: its sender is dropped.
 */
void on_delta(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	struct manifest_delta d;
	int was_final;

	if (!sw->have_root)
		return; /* the root we get next is at least as new */
	if (manifest_delta_decode(m->u.blob.data, m->u.blob.len, &d) != 0) {
		peer_close_error(sp->p, WIRE_E_PROTOCOL, "malformed delta");
		return;
	}
	if (d.new_gen <= sw->root.generation) {
		log_debug("peer %s: delta %llu -> %llu is not new here (generation %llu)",
		          peer_name(sp->p), (unsigned long long)d.old_gen,
		          (unsigned long long)d.new_gen, (unsigned long long)sw->root.generation);
		manifest_delta_free(&d);
		return;
	}
	if (d.old_gen > sw->root.generation) {
		struct wire_msg g = {.type = WIRE_GET_ROOT};

		log_info("peer %s: delta %llu -> %llu, we hold %llu: asking for its root",
		         peer_name(sp->p), (unsigned long long)d.old_gen,
		         (unsigned long long)d.new_gen, (unsigned long long)sw->root.generation);
		peer_send(sp->p, &g);
		manifest_delta_free(&d);
		return;
	}
	was_final = root_final(sw);
	if (delta_check_pages(sw, &d) != 0 ||
	    manifest_delta_apply_root(&sw->root, &d, sw->o.source_key) != 0) {
		sw->st.deltas_refused++;
		log_error("peer %s sent a delta %llu -> %llu that does not verify against the "
		          "source key and the chunk table: refused, dropping the peer",
		          peer_name(sp->p), (unsigned long long)d.old_gen,
		          (unsigned long long)d.new_gen);
		if (sp->addr >= 0)
			sw->conn.addrs[sp->addr].dead = 1;
		manifest_delta_free(&d);
		peer_close_error(sp->p, WIRE_E_BAD_DATA, "delta does not verify");
		return;
	}
	sw->st.deltas++;
	sw->st.chunks_changed += d.nchanges;
	log_debug("generation %llu from %s: %u chunks changed%s", (unsigned long long)d.new_gen,
	          peer_name(sp->p), d.nchanges,
	          (d.root_flags & MANIFEST_ROOT_F_FINAL) ? " (final)" : "");
	/* Passed on first: the HAVEs that applying it may send must follow it. */
	free(sw->gens.last_delta);
	sw->gens.last_delta = xmalloc(m->u.blob.len);
	memcpy(sw->gens.last_delta, m->u.blob.data, m->u.blob.len);
	sw->gens.last_delta_len = m->u.blob.len;
	delta_broadcast(sw, sp);
	delta_adopt(sw, &d);
	manifest_delta_free(&d);
	root_changed(sw, was_final);
}

/* Send a DELTA to every peer that knows the volume, except `except`. */
void delta_broadcast(struct swarm *sw, const struct speer *except)
{
	struct wire_msg m = {.type = WIRE_DELTA};

	m.u.blob.data = sw->gens.last_delta;
	m.u.blob.len = (uint32_t)sw->gens.last_delta_len;
	send_to_volume_peers(sw, except, &m);
}

/* Keep blob (ours now) as the newest delta, and the current root's encoding. */
void delta_keep(struct swarm *sw, uint8_t *blob, size_t len)
{
	free(sw->gens.last_delta);
	sw->gens.last_delta = blob;
	sw->gens.last_delta_len = len;
	free(sw->serve.root_blob);
	if (manifest_root_encode(root_of(sw), &sw->serve.root_blob, &sw->serve.root_blob_len) != 0)
		fatal("cannot encode the manifest root");
}
