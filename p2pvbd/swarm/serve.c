/* SPDX-License-Identifier: ISC */
/*
 * swarm/serve: serving peers from what this process holds. ROOT, have-maps
 * and HAVE, PAGE, PIECE from a bounded request queue per peer, upload slots
 * and their rotation, receipts taken at the source, and a plain seed's
 * check of a chunk a peer reported corrupt (PROTOCOL.md §7.4).
 */
#include "swarm_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgsrc.h"
#include "workq.h"

/*
 * Upload slots: peers whose background requests this process serves at a
 * time (urgent requests are always served). Others are answered BUSY and ask
 * elsewhere. Every SWARM_SLOT_ROTATE_S the longest-held slot goes to a peer
 * that was turned away, so that nobody starves.
 */
#define SWARM_UPLOAD_SLOTS  16
#define SWARM_SLOT_ROTATE_S 10

/* The generation at which we can serve chunk c, or -1 if we cannot. */
static int64_t serve_gen(const struct swarm *sw, uint32_t c)
{
	if (sw->o.role == SWARM_SEED) {
		const struct manifest_entry *e = &sw->o.manifest->entries[c];

		if (bit_get(sw->live.dirty, c) || bit_get(sw->live.rehash, c))
			return -1; /* its signed hash is stale */
		return (e->flags & MANIFEST_F_ZERO) ? -1 : (int64_t)e->gen;
	}
	/* Verified and written (durable or not: a crash here loses only our copy). */
	if (!sw->store_open || !bit_get(sw->serve.map, c))
		return -1;
	return (int64_t)store_gen_of(&sw->store, c);
}

int serve_fill(void *arg, uint8_t *dst, size_t len, uint64_t off)
{
	struct swarm *sw = arg;
	ssize_t n;

	if (sw->o.role == SWARM_FETCH)
		return store_read(&sw->store, off, dst, len);
	n = imgsrc_pread(sw->o.image_src, dst, len, off);
	if (n != (ssize_t)len) {
		log_error("reading image at offset %llu: %s", (unsigned long long)off,
		          n < 0 ? strerror(errno) : "EOF");
		return -1;
	}
	return 0;
}

static void send_have_map(struct swarm *sw, struct speer *sp)
{
	/* In parts that fit a message: 8 bits per byte of the bitmap. */
	const uint32_t per_msg = (WIRE_MAX_MSG - 16) * 8;
	uint32_t n = chunk_count(sw);

	for (uint32_t first = 0; first < n; first += per_msg) {
		struct wire_msg m = {.type = WIRE_HAVE_MAP};
		uint32_t count = n - first < per_msg ? n - first : per_msg;

		/* first is a multiple of 8, so the part starts on a byte boundary; the
		 * serve map keeps bits past the end clear. */
		m.u.have_map.first = first;
		m.u.have_map.count = count;
		m.u.have_map.bits = sw->serve.map + first / 8;
		peer_send(sp->p, &m);
	}
}

/* Answer GET_ROOT: the signed root, then what we can serve. */
void send_root_and_map(struct swarm *sw, struct speer *sp)
{
	struct wire_msg r = {.type = WIRE_ROOT};

	r.u.blob.data = sw->serve.root_blob;
	r.u.blob.len = (uint32_t)sw->serve.root_blob_len;
	peer_send(sp->p, &r);
	send_have_map(sw, sp);
	sp->wants_root = 0;
	sp->map_sent = 1;
}

static void reject(struct speer *sp, const struct wire_block *b, uint16_t code)
{
	struct wire_msg m = {.type = WIRE_REJECT};

	m.u.reject.blk = *b;
	m.u.reject.code = code;
	peer_send(sp->p, &m);
}

/* Send queued pieces while the peer's output has room: highest priority first. */
void serve_pump(struct speer *sp)
{
	struct swarm *sw = sp->sw;
	const struct manifest_root *r = root_of(sw);

	while (sp->nupq > 0 && peer_is_ready(sp->p) && !peer_out_full(sp->p)) {
		int best = 0;
		struct upreq q;
		uint64_t off;

		/*
		 * Highest priority first. Within it, finish the chunk being sent,
		 * then start the one this process has sent least often: two
		 * destinations that asked for the same chunk get it once from
		 * here, and the other copy flows between them (§7.3).
		 */
		for (int i = 1; i < sp->nupq; i++) {
			const struct upreq *a = &sp->upq[i], *b = &sp->upq[best];

			if (a->prio != b->prio) {
				if (a->prio > b->prio)
					best = i;
				continue;
			}
			if (b->blk.chunk == sp->cur_chunk)
				continue;
			if (a->blk.chunk == sp->cur_chunk ||
			    sw->serve.sent_count[a->blk.chunk] < sw->serve.sent_count[b->blk.chunk])
				best = i;
		}
		q = sp->upq[best];
		if (q.blk.chunk != sp->cur_chunk) {
			sp->cur_chunk = q.blk.chunk;
			if (sw->serve.sent_count[q.blk.chunk] < UINT8_MAX)
				sw->serve.sent_count[q.blk.chunk]++;
		}
		memmove(&sp->upq[best], &sp->upq[best + 1],
		        (size_t)(sp->nupq - best - 1) * sizeof(q));
		sp->nupq--;
		/* The chunk may have changed since the request was queued. */
		if (serve_gen(sw, q.blk.chunk) != (int64_t)q.blk.gen) {
			reject(sp, &q.blk, WIRE_E_GENERATION);
			continue;
		}
		off = (uint64_t)q.blk.chunk * r->chunk_size + q.blk.offset;
		if (peer_send_piece(sp->p, q.blk.chunk, q.blk.gen, q.blk.offset, q.blk.length,
		                    serve_fill, sw, off) != 0) {
			peer_close_error(sp->p, WIRE_E_INTERNAL, "cannot read chunk %u",
			                 q.blk.chunk);
			return;
		}
		sw->st.bytes_served += q.blk.length;
		if (q.blk.offset + q.blk.length == manifest_chunk_len(r, q.blk.chunk))
			sw->st.chunks_served++;
	}
	if (sp->nupq == 0 && sp->slot) {
		/* Idle: the slot is free for another peer (it gets one back when free). */
		sp->slot = 0;
		sw->serve.slots_used--;
	}
	if (sp->nupq < SWARM_UPQ_MAX / 2)
		peer_resume_read(sp->p);
}

void serve_request(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	const struct wire_block *b = &m->u.request.blk;
	int64_t gen;

	if (!sw->o.manifest && !sw->have_root) {
		reject(sp, b, WIRE_E_UNAVAILABLE);
		return;
	}
	if (b->chunk >= chunk_count(sw) ||
	    (uint64_t)b->offset + b->length > manifest_chunk_len(root_of(sw), b->chunk)) {
		reject(sp, b, WIRE_E_RANGE);
		return;
	}
	gen = serve_gen(sw, b->chunk);
	if (gen < 0) {
		int seed = sw->o.role == SWARM_SEED;

		if (seed &&
		    (bit_get(sw->live.dirty, b->chunk) || bit_get(sw->live.rehash, b->chunk)))
			reject(sp, b, WIRE_E_GENERATION);
		else if (seed && (sw->o.manifest->entries[b->chunk].flags & MANIFEST_F_ZERO))
			reject(sp, b, WIRE_E_ZERO);
		else
			reject(sp, b, WIRE_E_UNAVAILABLE);
		return;
	}
	if ((uint64_t)gen != b->gen) {
		reject(sp, b, WIRE_E_GENERATION);
		return;
	}
	/* Background requests need an upload slot; faults are always served. */
	if (!sp->slot && m->u.request.prio < WIRE_PRIO_URGENT) {
		if (sw->serve.slots_used >= SWARM_UPLOAD_SLOTS || now_ns() < sp->no_slot_until_ns) {
			if (sp->turned_away_ns == 0)
				sp->turned_away_ns = now_ns();
			reject(sp, b, WIRE_E_BUSY);
			return;
		}
		sp->slot = 1;
		sp->slot_since_ns = now_ns();
		sp->turned_away_ns = 0;
		sw->serve.slots_used++;
	}
	/* The same block asked again at a higher priority (a fault at the other
	 * end): move the queued request up instead of sending the block twice. */
	for (int i = 0; i < sp->nupq; i++) {
		struct wire_block *q = &sp->upq[i].blk;

		if (q->chunk == b->chunk && q->gen == b->gen && q->offset == b->offset &&
		    q->length == b->length) {
			if (m->u.request.prio > sp->upq[i].prio)
				sp->upq[i].prio = m->u.request.prio;
			return;
		}
	}
	if (sp->nupq >= SWARM_UPQ_MAX) {
		/* We paused reading at the bound; a peer that still overflows it is broken. */
		peer_close_error(sp->p, WIRE_E_BUSY, "more than %d requests queued", SWARM_UPQ_MAX);
		return;
	}
	sp->upq[sp->nupq].blk = *b;
	sp->upq[sp->nupq].prio = m->u.request.prio;
	sp->nupq++;
	if (sp->nupq >= SWARM_UPQ_MAX)
		peer_pause_read(sp->p);
	serve_pump(sp);
}

void serve_cancel(struct speer *sp, const struct wire_block *b)
{
	for (int i = 0; i < sp->nupq; i++) {
		struct wire_block *q = &sp->upq[i].blk;

		if (q->chunk == b->chunk && q->gen == b->gen && q->offset == b->offset &&
		    q->length == b->length) {
			memmove(&sp->upq[i], &sp->upq[i + 1],
			        (size_t)(sp->nupq - i - 1) * sizeof(sp->upq[0]));
			sp->nupq--;
			return;
		}
	}
}

/*
 * A destination serves pages of the chunk table only once it holds the whole
 * volume (its have-map is complete: that is how peers know to ask it, §7.1),
 * from the copy of each verified page it kept in OUT.p2pvbd-pages, checked
 * again against the signed root before it is sent.
 */
static size_t serve_page_from_file(struct swarm *sw, uint32_t page)
{
	size_t n = (size_t)manifest_page_len(&sw->root, page) * MANIFEST_ENTRY_LEN;
	struct manifest_entry *e;
	int ok;

	if (sw->pages.fd < 0 || sw->serve.nchunks < sw->root.chunk_count ||
	    read_at(sw->pages.fd, sw->serve.page_buf, n,
	            (uint64_t)page * MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN) != (ssize_t)n)
		return 0;
	e = xmalloc(MANIFEST_PAGE_ENTRIES * sizeof(*e));
	ok = manifest_page_decode(&sw->root, page, sw->serve.page_buf, n, e) == 0;
	free(e);
	if (!ok)
		log_warn("page %u in %s.p2pvbd-pages does not verify: not serving it", page,
		         sw->o.out_path);
	return ok ? n : 0;
}

void serve_page(struct speer *sp, uint32_t page)
{
	struct swarm *sw = sp->sw;
	struct wire_msg m = {.type = WIRE_PAGE};
	size_t n = 0;

	if (page < root_of(sw)->page_count) {
		if (sw->o.role == SWARM_SEED)
			n = manifest_page_encode(sw->o.manifest, page, sw->serve.page_buf,
			                         MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN);
		else if (sw->have_root)
			n = serve_page_from_file(sw, page);
	}
	if (n == 0) {
		peer_close_error(sp->p, WIRE_E_RANGE, "no page %u", page);
		return;
	}
	m.u.page.page = page;
	m.u.page.root_gen = root_of(sw)->generation;
	m.u.page.data = sw->serve.page_buf;
	m.u.page.len = (uint32_t)n;
	peer_send(sp->p, &m);
}

/* Whether the operator named pk with --receipt-from (or named nobody: every member counts). */
static int receipt_signer_wanted(const struct swarm *sw, const uint8_t pk[VCRYPTO_PK_LEN])
{
	if (sw->o.nreceipt_from == 0)
		return 1;
	for (int i = 0; i < sw->o.nreceipt_from; i++)
		if (memcmp(sw->o.receipt_from[i], pk, VCRYPTO_PK_LEN) == 0)
			return 1;
	return 0;
}

/*
 * Check a receipt (from a peer, or relayed by a tracker: `via` names it) and
 * count its signer once (PROTOCOL.md §7.6). NULL if it was good, else why not;
 * *signer (2 * VCRYPTO_PK_LEN + 1 bytes) gets the signer in hex once the
 * signature verified, "" before.
 */
const char *receipt_take(struct swarm *sw, const uint8_t *blob, size_t len, const char *via,
                         char *signer)
{
	struct manifest_receipt rc;
	const struct manifest_root *r = root_of(sw);
	const char *why;
	int known = 0;

	signer[0] = '\0';
	if (manifest_receipt_decode(blob, len, NULL, &rc, &why) != 0)
		return why;
	hex_encode(rc.signer, VCRYPTO_PK_LEN, signer);
	/* The MAC apart, so that a refusal can name the signer it claims. */
	if (manifest_receipt_decode(blob, len, sw->receipts.key, &rc, &why) != 0)
		return why;
	if (memcmp(rc.volume_id, r->volume_id, MANIFEST_ID_LEN) != 0)
		return "receipt for another volume";
	if (rc.generation != r->generation || memcmp(rc.root_hash, r->root_hash, 32) != 0)
		return "receipt for another generation of the volume";
	if (!(r->flags & MANIFEST_ROOT_F_FINAL))
		return "the source is not frozen yet: no generation is final";
	if (!receipt_signer_wanted(sw, rc.signer))
		return "its signer is not one of the destinations named by --receipt-from: not "
		       "counted";
	/* Count distinct signers: a list is fine, N is small. */
	for (uint64_t i = 0; i < sw->receipts.nsigners; i++)
		if (memcmp(sw->receipts.signers[i], rc.signer, VCRYPTO_PK_LEN) == 0)
			known = 1;
	if (known)
		return NULL; /* seen before, directly or through a tracker */
	sw->receipts.signers = xrealloc(sw->receipts.signers, (size_t)(sw->receipts.nsigners + 1) *
	                                                          sizeof(*sw->receipts.signers));
	memcpy(sw->receipts.signers[sw->receipts.nsigners++], rc.signer, VCRYPTO_PK_LEN);
	sw->st.receipts = sw->receipts.nsigners;
	log_info("receipt from %s (%s): holds generation %llu complete", signer, via,
	         (unsigned long long)rc.generation);
	return NULL;
}

/* With --exit-after-receipts: finish once enough were counted. Closes the peers. */
void receipts_check_enough(struct swarm *sw)
{
	if (sw->o.exit_after_receipts > 0 && !sw->finished &&
	    sw->st.receipts >= (uint64_t)sw->o.exit_after_receipts) {
		log_info("%llu receipts received: the source's data is no longer needed",
		         (unsigned long long)sw->st.receipts);
		finish_run(sw, 0);
	}
}

void serve_receipt(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	struct wire_msg ack = {.type = WIRE_RECEIPT_ACK};
	char via[100], signer[2 * VCRYPTO_PK_LEN + 1];
	const char *why;

	snprintf(via, sizeof(via), "peer %s", peer_name(sp->p));
	why = receipt_take(sw, m->u.blob.data, m->u.blob.len, via, signer);
	if (why != NULL) {
		log_warn("peer %s: receipt refused%s%s%s: %s", peer_name(sp->p),
		         *signer ? " (signer " : "", signer, *signer ? ")" : "", why);
		ack.u.error.code = WIRE_E_BAD_RECEIPT;
		ack.u.error.text = why;
		ack.u.error.text_len = (uint16_t)strlen(why);
	}
	peer_send(sp->p, &ack);
	receipts_check_enough(sw); /* last: it may close sp */
}

/*
 * Chunk c (generation gen) is verified and in the image: serve it, and
 * (announce != 0) tell the peers that have our have-map. Once written it can
 * be served: other destinations need not wait for our fdatasync.
 */
void serve_add(struct swarm *sw, uint32_t c, uint64_t gen, int announce)
{
	struct wire_msg m = {.type = WIRE_HAVE};

	if (!bit_get(sw->serve.map, c)) {
		sw->serve.nchunks++;
		bit_set(sw->serve.map, c);
		if (!is_seed(sw) && sw->serve.nchunks == chunk_count(sw)) {
			/*
			 * Whole now: the zero chunks never had a HAVE, so peers see our
			 * complete map (and may ask us for pages, §7.1) only in a new
			 * have-map. One message per 8 million chunks, once per completion.
			 */
			for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
				if (sp->map_sent && peer_is_ready(sp->p))
					send_have_map(sw, sp);
		}
	}
	if (!announce)
		return;
	m.u.have.chunk = c;
	m.u.have.gen = gen;
	/* The source hears of it too: its write-through mode waits for that. */
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if ((sp->map_sent || (peer_is_source(sp->p) && !is_seed(sw))) &&
		    peer_is_ready(sp->p))
			peer_send(sp->p, &m);
}

/*
 * If a peer was turned away for want of an upload slot, take the slot held
 * longest and free it (its peer is told BUSY at its next request and asks
 * elsewhere); the waiting peer gets it with its next request.
 */
void rotate_slots(struct swarm *sw, uint64_t now)
{
	struct speer *oldest = NULL;
	int waiting = 0;

	if (now - sw->serve.last_rotate_ns < (uint64_t)SWARM_SLOT_ROTATE_S * NS_PER_S)
		return;
	sw->serve.last_rotate_ns = now;
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		if (sp->turned_away_ns != 0 && !sp->slot)
			waiting = 1;
		if (sp->slot && (oldest == NULL || sp->slot_since_ns < oldest->slot_since_ns))
			oldest = sp;
	}
	if (waiting && oldest != NULL && sw->serve.slots_used >= SWARM_UPLOAD_SLOTS) {
		log_debug("upload slot of %s goes to a waiting peer", peer_name(oldest->p));
		oldest->slot = 0;
		oldest->no_slot_until_ns = now + 2ull * SWARM_BUSY_BACKOFF_MS * NS_PER_MS;
		sw->serve.slots_used--;
	}
}

/*
 * Without -e nothing here writes the image, and the lock keeps QEMU off it,
 * but the lock is advisory: a process that ignores it can still change the
 * image under us, and destinations then refuse the chunk as corrupt. When
 * one says so (its ERROR names the chunk), hash that chunk again: if it
 * differs from the manifest, stop rather than serve bytes no signature
 * vouches for; if not, the reporter or the path was at fault.
 */

static const char *image_name(const struct swarm *sw)
{
	return sw->o.image_path != NULL ? sw->o.image_path : "the image";
}

static void recheck_done(void *arg)
{
	struct rehash_job *j = arg;
	struct swarm *sw = j->sw;
	const struct manifest_entry *e = &sw->o.manifest->entries[j->chunk];

	for (int i = 0; i < sw->serve.nrecheck; i++)
		if (sw->serve.recheck[i] == j->chunk) {
			sw->serve.recheck[i] = sw->serve.recheck[--sw->serve.nrecheck];
			break;
		}
	if (sw->finished) {
		free(j);
		return;
	}
	if (j->result != 0) {
		log_error("%s: cannot read chunk %u again to check it", image_name(sw), j->chunk);
		finish_run(sw, -1);
	} else if (memcmp(j->hash, e->hash, sizeof(j->hash)) != 0) {
		log_error("%s changed after it was hashed (chunk %u); a changing image needs -e",
		          image_name(sw), j->chunk);
		finish_run(sw, -1);
	} else {
		log_warn("chunk %u still matches its hash here: the peer that reported it corrupt, "
		         "or the network between us, is at fault; going on",
		         j->chunk);
	}
	free(j);
}

/* A peer told us chunk c (asked at generation gen) failed its verification. */
void serve_recheck(struct swarm *sw, const char *who, uint32_t c, uint64_t gen)
{
	const struct manifest *man = sw->o.manifest;
	struct rehash_job *j;

	if (c >= man->root.chunk_count || (man->entries[c].flags & MANIFEST_F_ZERO) ||
	    gen != man->entries[c].gen) {
		log_warn(
		    "peer %s reported chunk %u of generation %llu corrupt, which we never serve: "
		    "ignored",
		    who, c, (unsigned long long)gen);
		return;
	}
	for (int i = 0; i < sw->serve.nrecheck; i++)
		if (sw->serve.recheck[i] == c)
			return; /* being checked already */
	if (sw->serve.nrecheck == SWARM_RECHECK_MAX) {
		log_warn(
		    "peer %s reported chunk %u corrupt; %d checks are running already: ignored",
		    who, c, SWARM_RECHECK_MAX);
		return;
	}
	log_warn("peer %s reported chunk %u corrupt: hashing it again from %s", who, c,
	         image_name(sw));
	sw->serve.recheck[sw->serve.nrecheck++] = c;
	j = xcalloc(1, sizeof(*j));
	j->sw = sw;
	j->src = sw->o.image_src;
	j->chunk = c;
	j->len = manifest_chunk_len(&man->root, c);
	j->off = (uint64_t)c * man->root.chunk_size;
	workq_push(sw->live.hashq, rehash_run, recheck_done, j);
}
