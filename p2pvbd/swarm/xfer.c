/* SPDX-License-Identifier: ISC */
/*
 * swarm/xfer: the transfer pipeline at a destination. A chunk is requested
 * in blocks from one peer (struct xfer), its pieces arrive, the whole chunk
 * is verified and written by a worker, and the store commits it durably;
 * --basis chunks take the same path from a local file.
 */
#include "swarm_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workq.h"

static struct xfer *xfer_any(struct swarm *sw, uint32_t chunk);

static struct xfer *xfer_find(struct swarm *sw, uint32_t chunk, const struct speer *from)
{
	for (int i = 0; i < sw->pipe.nxfers; i++)
		if (sw->pipe.xfers[i].chunk == chunk && sw->pipe.xfers[i].from == from)
			return &sw->pipe.xfers[i];
	return NULL;
}

/* Take x's missing blocks off its peer's in-flight count. */
static void xfer_uncount(struct speer *sp, const struct xfer *x)
{
	for (uint32_t off = 0; off < x->len; off += SWARM_BLOCK)
		if (x->blocks_missing & (1ull << (off / SWARM_BLOCK)))
			sp->pk.inflight_bytes -= block_len(x->len, off);
}

void xfer_drop(struct swarm *sw, struct xfer *x, int requeue)
{
	uint32_t c = x->chunk;

	if (requeue)
		pick_want_push(&sw->want, c);
	free(x->buf);
	*x = sw->pipe.xfers[--sw->pipe.nxfers];
	if (xfer_any(sw, c) == NULL)
		bit_clear(sw->pipe.fetching, c);
}

/* Take back the blocks of x not yet received (CANCEL each), then drop x. */
void xfer_cancel(struct swarm *sw, struct xfer *x, int requeue)
{
	for (uint32_t off = 0; off < x->len; off += SWARM_BLOCK) {
		struct wire_msg m = {.type = WIRE_CANCEL};

		if (!(x->blocks_missing & (1ull << (off / SWARM_BLOCK))))
			continue;
		m.u.cancel.chunk = x->chunk;
		m.u.cancel.gen = x->gen;
		m.u.cancel.offset = off;
		m.u.cancel.length = block_len(x->len, off);
		peer_send(x->from->p, &m);
	}
	xfer_uncount(x->from, x);
	xfer_drop(sw, x, requeue);
}

/* Take back every transfer of chunk c (not requeued: the caller settles c). */
void xfer_cancel_chunk(struct swarm *sw, uint32_t c)
{
	for (int i = sw->pipe.nxfers - 1; i >= 0; i--)
		if (sw->pipe.xfers[i].chunk == c)
			xfer_cancel(sw, &sw->pipe.xfers[i], 0);
}

/* Any transfer of chunk c in progress, from any peer. */
static struct xfer *xfer_any(struct swarm *sw, uint32_t chunk)
{
	for (int i = 0; i < sw->pipe.nxfers; i++)
		if (sw->pipe.xfers[i].chunk == chunk)
			return &sw->pipe.xfers[i];
	return NULL;
}

/* Ask x's peer for every block of x not yet received, at x's priority. */
static void xfer_request(const struct xfer *x)
{
	for (uint32_t off = 0; off < x->len; off += SWARM_BLOCK) {
		struct wire_msg m = {.type = WIRE_REQUEST};

		if (!(x->blocks_missing & (1ull << (off / SWARM_BLOCK))))
			continue;
		m.u.request.blk.chunk = x->chunk;
		m.u.request.blk.gen = x->gen;
		m.u.request.blk.offset = off;
		m.u.request.blk.length = block_len(x->len, off);
		m.u.request.prio = x->prio;
		peer_send(x->from->p, &m);
	}
}

/* Request all blocks of chunk c from sp at priority prio. */
void xfer_start(struct swarm *sw, struct speer *sp, uint32_t c, uint8_t prio)
{
	const struct manifest_entry *e = entry_of(sw, c);
	struct xfer *x = &sw->pipe.xfers[sw->pipe.nxfers++];

	x->chunk = c;
	x->gen = e->gen;
	x->len = manifest_chunk_len(&sw->root, c);
	x->buf = xmalloc(x->len);
	x->from = sp;
	x->prio = prio;
	x->blocks_missing = xfer_all_blocks(x->len);
	bit_set(sw->pipe.fetching, c);
	xfer_request(x);
	sp->pk.inflight_bytes += x->len;
}

/*
 * x was asked at a lower priority than a fault needs: ask again, higher. The
 * server moves the queued requests up; blocks already sent arrive once or
 * twice.
 */
void xfer_raise(struct xfer *x, uint8_t prio)
{
	x->prio = prio;
	xfer_request(x);
}

/* A chunk that arrived whole, on its way through verification to the store. */
struct verify_job {
	struct swarm *sw;
	uint32_t chunk;
	uint64_t gen;
	uint32_t len;
	uint8_t *buf; /* owned */
	uint8_t hash[VCRYPTO_HASH_LEN];
	uint64_t from_id;
	int from_dialled; /* we dialled the sender: from_where is its address */
	struct uri_peer from_where;
	int from_source;
	char from_name[80];
	int basis_fd; /* >= 0: read the chunk from the basis file first (buf is empty) */
	int result;   /* 0 stored, 1 bad hash, 2 the basis differs, -1 write error */
};

/* Worker thread: hash and, if it matches, write. Touches only the job and the files. */
static void verify_run(void *arg)
{
	struct verify_job *j = arg;
	uint8_t h[VCRYPTO_HASH_LEN];

	if (j->basis_fd >= 0 &&
	    read_at(j->basis_fd, j->buf, j->len, (uint64_t)j->chunk * j->sw->root.chunk_size) !=
	        (ssize_t)j->len) {
		j->result = 2; /* the basis is shorter, or unreadable here: fetch it */
		return;
	}
	vcrypto_hash(h, j->buf, j->len);
	if (vcrypto_memcmp(h, j->hash, VCRYPTO_HASH_LEN) != 0)
		j->result = j->basis_fd >= 0 ? 2 : 1;
	else
		j->result = store_write(&j->sw->store, j->chunk, j->buf, j->len) == 0 ? 0 : -1;
}

/* Loop thread: account for a verified (or rejected) chunk. */
static void verify_done(void *arg)
{
	struct verify_job *j = arg;
	struct swarm *sw = j->sw;
	uint32_t page = j->chunk / MANIFEST_PAGE_ENTRIES;

	sw->pipe.nverifying--;
	bit_clear(sw->pipe.verifying, j->chunk);
	chunk_wake(sw, j->chunk); /* a write of it whole may go now, whatever the result */
	if (bit_get(sw->gens.stale, j->chunk)) {
		/* A delta changed the chunk meanwhile: what was written is of an older
		 * generation (never marked: put_begin cleared the mark). */
		const struct manifest_entry *e = entry_of(sw, j->chunk);

		bit_clear(sw->gens.stale, j->chunk);
		if (e != NULL && (e->flags & MANIFEST_F_ZERO)) {
			if (chunk_put_zero(sw, j->chunk, e) != 0)
				finish_run(sw, -1);
		} else if (e != NULL) {
			pick_want_push(&sw->want, j->chunk);
		}
	} else if (j->result == 0) {
		store_put_end(&sw->store, j->chunk, j->gen, j->hash);
		chunk_now_available(sw, j->chunk);
		serve_add(sw, j->chunk, j->gen, 1);
		if (j->basis_fd >= 0) {
			sw->st.chunks_basis++;
		} else {
			sw->st.chunks_fetched++;
			sw->st.bytes_fetched += j->len;
			if (!j->from_source)
				sw->st.bytes_from_peers += j->len;
		}
		sw->last_progress_ns = now_ns();
		/* (A page fetched again counts its chunks anew when it is back.) */
		if (sw->pages.status[page] == PAGE_LOADED && --sw->pages.left[page] == 0)
			page_done(sw, page);
		if (store_pending_bytes(&sw->store) >= SWARM_COMMIT_BYTES)
			commit_start(sw);
	} else if (j->result == 2) {
		pick_want_push(&sw->want, j->chunk); /* changed since the basis: fetch it */
	} else if (j->result == 1) {
		sw->st.bad_pieces++;
		log_warn("chunk %u from peer %s does not match its signed hash: discarded, "
		         "dropping the peer",
		         j->chunk, j->from_name);
		pick_want_push(&sw->want, j->chunk);
		/* Never dial that address again (by value: the table may have been compacted). */
		for (int i = 0; j->from_dialled && i < sw->conn.naddrs; i++)
			if (sw->conn.addrs[i].where.port == j->from_where.port &&
			    strcmp(sw->conn.addrs[i].where.host, j->from_where.host) == 0)
				sw->conn.addrs[i].dead = 1;
		for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
			if (sp->id == j->from_id) {
				peer_close_bad_chunk(sp->p, j->chunk, j->gen,
				                     "chunk %u failed verification", j->chunk);
				break;
			}
	} else {
		finish_run(sw, -1);
	}
	free(j->buf);
	free(j);
	check_pages(sw, "a verified chunk");
	fetch_schedule(sw);
}

/*
 * --basis: chunks of loaded pages wait in basis_q; a worker reads each from
 * the basis file at the same offset and, if its hash matches the signed one,
 * writes it to the image like a fetched chunk. Chunks that differ go to want.
 * At most SWARM_VERIFY_MAX chunks are in verification at once (memory).
 */
void basis_pump(struct swarm *sw)
{
	while (sw->pipe.nbasis_q > 0 && sw->pipe.nverifying < SWARM_VERIFY_MAX && !sw->finished) {
		uint32_t c = sw->pipe.basis_q[--sw->pipe.nbasis_q];
		const struct manifest_entry *e = entry_of(sw, c);
		struct verify_job *j;

		if (bit_get(sw->chunks.avail, c) || bit_get(sw->chunks.local, c) ||
		    bit_get(sw->pipe.verifying, c) || bit_get(sw->pipe.fetching, c))
			continue; /* a fault fetched it meanwhile, or the VM wrote it */
		if (e == NULL)
			continue; /* its page is being fetched again: queued anew then */
		if (store_put_begin(&sw->store, c, e->gen, manifest_chunk_len(&sw->root, c)) != 0) {
			finish_run(sw, -1);
			return;
		}
		j = xcalloc(1, sizeof(*j));
		j->sw = sw;
		j->chunk = c;
		j->gen = e->gen;
		j->len = manifest_chunk_len(&sw->root, c);
		j->buf = xmalloc(j->len);
		memcpy(j->hash, e->hash, VCRYPTO_HASH_LEN);
		j->from_source = 0;
		j->basis_fd = sw->pipe.basis_fd;
		snprintf(j->from_name, sizeof(j->from_name), "the basis");
		bit_set(sw->pipe.verifying, c);
		sw->pipe.nverifying++;
		workq_push(sw->pipe.verifyq, verify_run, verify_done, j);
	}
}

/*
 * x is complete: give up the other transfers of its chunk (endgame copies),
 * sending CANCEL for the blocks they still miss. Returns x, which may have
 * moved in the array.
 */
static struct xfer *cancel_copies_keep(struct swarm *sw, struct xfer *x)
{
	uint32_t chunk = x->chunk;
	struct speer *from = x->from;

	/* Backwards: xfer_drop moves the last entry, already visited, into slot i. */
	for (int i = sw->pipe.nxfers - 1; i >= 0; i--) {
		struct xfer *o = &sw->pipe.xfers[i];

		if (o->chunk != chunk || o->from == from)
			continue;
		xfer_cancel(sw, o, 0);
	}
	return xfer_find(sw, chunk, from);
}

/* A whole chunk arrived: hand it to a worker for verification and writing. */
static void xfer_arrived(struct swarm *sw, struct xfer *x)
{
	const struct manifest_entry *e;
	struct verify_job *j;

	x = cancel_copies_keep(sw, x);
	e = entry_of(sw, x->chunk);

	if (e == NULL || e->gen != x->gen) {
		xfer_drop(sw, x, 0); /* its generation is gone: chunk_stale requeued it */
		return;
	}
	if (store_put_begin(&sw->store, x->chunk, x->gen, x->len) != 0) {
		xfer_drop(sw, x, 0);
		finish_run(sw, -1);
		return;
	}
	j = xcalloc(1, sizeof(*j));
	j->sw = sw;
	j->chunk = x->chunk;
	j->gen = x->gen;
	j->len = x->len;
	j->buf = x->buf;
	x->buf = NULL; /* now the job's */
	memcpy(j->hash, e->hash, VCRYPTO_HASH_LEN);
	j->from_id = x->from->id;
	if (x->from->addr >= 0) {
		j->from_dialled = 1;
		j->from_where = sw->conn.addrs[x->from->addr].where;
	}
	j->from_source = peer_is_source(x->from->p);
	j->basis_fd = -1;
	snprintf(j->from_name, sizeof(j->from_name), "%s", peer_name(x->from->p));
	xfer_drop(sw, x, 0);
	bit_set(sw->pipe.verifying, j->chunk);
	sw->pipe.nverifying++;
	workq_push(sw->pipe.verifyq, verify_run, verify_done, j);
}

struct commit_job {
	struct swarm *sw;
	struct store_batch *batch; /* NULL: only the data needs syncing */
	int result;
};

static void commit_run(void *arg)
{
	struct commit_job *j = arg;

	if (j->batch != NULL)
		j->result = store_commit_sync(&j->sw->store, j->batch);
	else
		j->result = store_sync_data(&j->sw->store);
}

static void commit_done(void *arg)
{
	struct commit_job *j = arg;
	struct swarm *sw = j->sw;
	struct flush_waiter *w = sw->pipe.flush_cur;
	int result = j->result;
	sw->pipe.committing = 0;
	sw->pipe.flush_cur = NULL;
	if (j->batch != NULL && store_commit_end(&sw->store, j->batch, j->result) < 0)
		result = -1;
	free(j);
	waiters_call(&w, result);
	if (result < 0 && !sw->finished) {
		log_error("cannot make the image durable: stopping");
		finish_run(sw, -1);
	}
	if (sw->pipe.flush_next != NULL)
		commit_start(sw);
	fetch_schedule(sw);
}

/*
 * Start making what was written so far durable, unless a commit is already
 * running (its completion starts the next one if flushes wait). A commit
 * runs when chunks are pending or someone waits for a flush.
 */
void commit_start(struct swarm *sw)
{
	struct commit_job *j;
	struct store_batch *b;

	if (sw->pipe.committing || !sw->store_open)
		return;
	b = store_commit_begin(&sw->store);
	if (b == NULL && sw->pipe.flush_next == NULL)
		return;
	j = xcalloc(1, sizeof(*j));
	j->sw = sw;
	j->batch = b;
	sw->pipe.committing = 1;
	sw->pipe.flush_cur = sw->pipe.flush_next;
	sw->pipe.flush_next = NULL;
	sw->pipe.last_commit_ns = now_ns();
	workq_push(sw->pipe.syncq, commit_run, commit_done, j);
}

void on_piece(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	struct xfer *x = sw->have_root ? xfer_find(sw, m->u.piece.chunk, sp) : NULL;
	uint32_t off = m->u.piece.offset, len = m->u.piece.len, blk, want_len;

	if (!sw->have_root || m->u.piece.chunk >= sw->root.chunk_count) {
		peer_close_error(sp->p, WIRE_E_PROTOCOL, "piece of unknown chunk %u",
		                 m->u.piece.chunk);
		return;
	}
	if (x == NULL || m->u.piece.gen != x->gen) {
		/* A copy of a block asked for twice (a fault raised its priority after
		 * the first request went out): harmless, dropped. */
		log_debug("peer %s: dropping a piece of chunk %u that is no longer wanted",
		          peer_name(sp->p), m->u.piece.chunk);
		sw->st.bytes_discarded += m->u.piece.len;
		return;
	}
	blk = off / SWARM_BLOCK;
	want_len = off < x->len && x->len - off < SWARM_BLOCK ? x->len - off : SWARM_BLOCK;
	if (off % SWARM_BLOCK != 0 || off >= x->len || len != want_len) {
		peer_close_error(sp->p, WIRE_E_PROTOCOL,
		                 "piece of chunk %u at %u does not match a request",
		                 m->u.piece.chunk, off);
		return;
	}
	if (!(x->blocks_missing & (1ull << blk))) {
		sw->st.bytes_discarded += len; /* a duplicate, as above */
		return;
	}
	memcpy(x->buf + off, m->u.piece.data, len);
	x->blocks_missing &= ~(1ull << blk);
	sp->pk.inflight_bytes -= len;
	sp->rx_bytes += len;
	if (x->blocks_missing == 0)
		xfer_arrived(sw, x);
	fetch_schedule(sw);
}

void on_reject(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	const struct wire_block *b = &m->u.reject.blk;
	struct xfer *x = sw->have_root ? xfer_find(sw, b->chunk, sp) : NULL;

	if (x == NULL || x->gen != b->gen)
		return; /* the transfer was already given up (maybe asked again since) */
	xfer_uncount(sp, x);
	if (m->u.reject.code == WIRE_E_BUSY) {
		/* No upload slot for us there now: ask others for a while. */
		log_debug("peer %s is busy (chunk %u)", peer_name(sp->p), b->chunk);
		sp->pk.busy_until_ns = now_ns() + (uint64_t)SWARM_BUSY_BACKOFF_MS * NS_PER_MS;
	} else if (m->u.reject.code == WIRE_E_GENERATION) {
		/* Changed there (the source's VM wrote it, or one of us is behind): a
		 * HAVE at the new generation comes once it is published. */
		log_debug("peer %s: chunk %u is not at generation %llu there", peer_name(sp->p),
		          b->chunk, (unsigned long long)b->gen);
		have_clear(sw, sp, b->chunk);
	} else {
		log_warn("peer %s rejected chunk %u: %s", peer_name(sp->p), b->chunk,
		         wire_code_name(m->u.reject.code));
		/* Another peer may have it; this one said it does not. */
		have_clear(sw, sp, b->chunk);
	}
	xfer_drop(sw, x, 1);
	fetch_schedule(sw);
}
