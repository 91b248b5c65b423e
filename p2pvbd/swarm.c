/*
 * swarm: peers of one volume; serving and fetching chunks. See swarm.h.
 */
#include "swarm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "peer.h"
#include "scan.h"
#include "store.h"
#include "tclient.h"
#include "util.h"
#include "workq.h"

/* Longest wait between reconnection attempts to a peer address, seconds. */
#define SWARM_BACKOFF_MAX_S 16
/*
 * Peer addresses remembered (from the URI and from trackers). A tracker
 * hands out 50 per announce; a few hundred cover every site of a large
 * migration while keeping the table a few hundred KiB.
 */
#define SWARM_ADDRS_MAX 256
/* Outgoing connections at once: enough for a full mesh of a 32-host swarm. */
#define SWARM_CONNECT_MAX 32
/* All connections at once (ours and accepted); beyond it, new ones are refused. */
#define SWARM_PEERS_MAX 64
/* A learned address that failed this many times in a row is forgotten. */
#define SWARM_LEARNED_TRIES 5
/* Most chunks being assembled at once (all peers together). */
#define SWARM_XFER_MAX 256
/*
 * Fetched chunks are requested in blocks of this size. Small blocks keep each
 * frame short, so that an urgent piece never waits long behind a background
 * piece already being sent (64 KiB is 5 ms at 100 Mbit/s), while the
 * per-frame overhead (28 bytes) stays negligible.
 */
#define SWARM_BLOCK (64u * 1024u)
/* Output to one peer above which we stop reading its requests for roots and pages. */
#define SWARM_REPLY_OUT_MAX (4u * 1024u * 1024u)
/* Most complete chunks waiting for (or in) verification; bounds their memory. */
#define SWARM_VERIFY_MAX 64
/*
 * Background requests outstanding to one peer: what it delivers in
 * SWARM_PIPELINE_MS at its measured rate, at least SWARM_INFLIGHT_MIN and at
 * most SWARM_INFLIGHT_MAX. Deep enough to keep its link busy across a round
 * trip; shallow, so that a slow peer holds few chunks and the rarest-first
 * choice is made late, with fresh have-maps.
 */
#define SWARM_PIPELINE_MS  500
#define SWARM_INFLIGHT_MIN (1024u * 1024u)
/* How long a peer that answered BUSY (no upload slot for us) is left alone. */
#define SWARM_BUSY_BACKOFF_MS 2000
/*
 * Upload slots: peers whose background requests this process serves at a
 * time (urgent requests are always served). Others are answered BUSY and ask
 * elsewhere. Every SWARM_SLOT_ROTATE_S the longest-held slot goes to a peer
 * that was turned away, so that nobody starves.
 */
#define SWARM_UPLOAD_SLOTS  16
#define SWARM_SLOT_ROTATE_S 10
/*
 * seed -e: a round of rehashing the chunks the VM dirtied starts at most this
 * often (and at once at a freeze). Short rounds keep the dirty set small, so
 * that the freeze, which must hash what is left, stays short whatever was
 * dirtied before; each round costs two signatures and one DELTA per peer.
 */
#define SWARM_ROUND_MS 100
/*
 * A plain seed told that a chunk it sent failed verification hashes that
 * chunk again (PROTOCOL.md §7.4): at most this many at once. Each costs a
 * read and hash of one chunk on a worker; a member that reconnects to report
 * lies over and over gets no more than this much of our disk and CPU.
 */
#define SWARM_RECHECK_MAX 4

/* A queued upload request. */
struct upreq {
	struct wire_block blk;
	uint8_t prio;
};

/*
 * What the picker knows of a peer: part of struct speer (pk), kept current
 * by the swarm; the picker reads it and nothing else of the peer.
 */
struct pick_peer {
	uint8_t *have;           /* chunk bitmap, NULL until the root is known (the speer's) */
	uint64_t inflight_bytes; /* requested from it and not yet received */
	double rate;             /* piece bytes/s from it, smoothed */
	uint64_t busy_until_ns;  /* it has no upload slot for us until then */
	int is_source;           /* it proved it holds the source key */
};

/* Our side of one peer connection. */
struct speer {
	struct swarm *sw;
	struct peer *p;
	uint64_t id;         /* unique in this process: jobs name their peer by it */
	int addr;            /* index into sw->conn.addrs, or -1 if it connected to us */
	int root_seen;       /* it answered GET_ROOT */
	int wants_root;      /* it asked for our root before we had one */
	int map_sent;        /* it has our have-map: tell it of new chunks with HAVE */
	struct pick_peer pk; /* what the picker knows of it: have-map, pipeline */
	uint64_t rx_bytes;   /* piece bytes received since the last rate update */
	int slot;            /* we serve its background requests (an upload slot) */
	uint32_t nhave;      /* chunks in have: all of them = it serves pages too */
	uint64_t slot_since_ns;
	uint64_t turned_away_ns;   /* we answered BUSY (0: not waiting) */
	uint64_t no_slot_until_ns; /* its slot was rotated away: none before then */
	int64_t cur_chunk;         /* the chunk we are sending it (-1: none) */
	uint64_t mon_in, mon_out;  /* its piece byte counters at the last rate update */
	double mon_in_rate;        /* piece bytes/s from it, smoothed like the status rates */
	double mon_out_rate;       /* piece bytes/s to it, likewise (for swarm_peer_list) */
	struct upreq upq[SWARM_UPQ_MAX];
	int nupq;
	struct speer *next;
};

/* A peer address (from the URI or a tracker), and how connecting to it goes. */
struct addr {
	struct uri_peer where;
	struct speer *sp; /* connected or connecting */
	int dead;         /* fatal failure, or ourselves: never retried */
	int learned;      /* from a tracker: forgotten after SWARM_LEARNED_TRIES failures */
	int fails;        /* failures in a row */
	int backoff_s;
	uint64_t next_try_ns;
	int have_identity; /* it authenticated once: identity is its key */
	uint8_t identity[VCRYPTO_PK_LEN];
	char last_error[160];
};

/* A chunk being received: its blocks arrive from one peer into buf. */
struct xfer {
	uint32_t chunk;
	uint64_t gen;
	uint32_t len;
	uint64_t blocks_missing; /* bit i: block i not yet received (4 MiB / 64 KiB = 64) */
	uint8_t prio;
	uint8_t *buf;
	struct speer *from;
};

/* Bytes of the block at off of a chunk of len bytes (the last one may be shorter). */
static inline uint32_t block_len(uint32_t len, uint32_t off)
{
	return len - off < SWARM_BLOCK ? len - off : SWARM_BLOCK;
}

/* blocks_missing of a transfer of a chunk of len bytes before anything arrived. */
static inline uint64_t xfer_all_blocks(uint32_t len)
{
	uint32_t n = (len + SWARM_BLOCK - 1) / SWARM_BLOCK;

	return n == 64 ? UINT64_MAX : (1ull << n) - 1;
}

enum page_status { PAGE_NONE, PAGE_ASKED, PAGE_LOADED, PAGE_DONE };

/*
 * Someone waiting: an NBD FLUSH (everything written so far durable), a freeze
 * (the final generation out), a write-through write (chunks first..last held
 * by a destination).
 */
struct flush_waiter {
	void (*fn)(void *arg, int result);
	void *arg;
	uint32_t first, last;
	struct flush_waiter *next;
};

/* conn.c: the connections, the address book and the trackers. */
struct conns {
	struct peer_ctx ctx;
	struct peer_ops ops;
	struct evconnlistener *listener;
	struct speer *peers;
	int npeers;         /* in the list, connecting or connected */
	uint64_t next_id;   /* the last speer id given out */
	struct addr *addrs; /* the address book: from the URI and from trackers */
	int naddrs;
	size_t addrs_cap;
	struct tclient **trackers;
	int ntrackers;
	uint16_t listen_port; /* 0 if not listening */
	uint8_t peer_id[20];  /* ours at the trackers */
};

/* serve.c: what this process serves, and its upload slots. */
struct serving {
	uint8_t *root_blob; /* encoded signed root, for ROOT replies */
	size_t root_blob_len;
	uint8_t *map;        /* chunks we can serve (bitmap) */
	uint32_t nchunks;    /* chunks in map */
	uint8_t *sent_count; /* per chunk: times we started sending it (saturating) */
	uint8_t *page_buf;   /* scratch for PAGE replies */
	int slots_used;
	uint64_t last_rotate_ns;
	uint32_t recheck[SWARM_RECHECK_MAX]; /* plain seed: chunks being hashed again */
	int nrecheck;
};

/* Receipts: our own at a destination (fetch.c), those taken at the source (serve.c). */
struct receipts {
	uint8_t blob[MANIFEST_RECEIPT_LEN]; /* ours, for the current generation */
	int made;                           /* blob holds it */
	int sent;                           /* to the source */
	int warned;                         /* nobody acknowledged it in time: said so */
	uint64_t deadline_ns;               /* acknowledged by then, or warned */
	uint8_t (*signers)[VCRYPTO_PK_LEN]; /* the source: distinct receipt signers */
	uint64_t nsigners;
};

/* fetch.c: the pages of the chunk table at a destination. */
struct pages {
	struct manifest_entry **entries; /* loaded pages, NULL otherwise */
	uint8_t *status;                 /* enum page_status */
	uint32_t *left;                  /* chunks of the page still missing */
	struct speer **from;             /* asked from */
	uint32_t next;                   /* next page to ask for */
	uint32_t held;                   /* ASKED or LOADED */
	uint32_t done;
	uint8_t *seen; /* bitmap: pages loaded at least once (resumed chunks checked) */
	uint32_t nseen;
	int fd; /* OUT.p2pvbd-pages, verified pages kept for serving */
};

/* fetch.c: what a destination holds of each chunk, and how many peers hold it. */
struct chunks {
	uint8_t *avail;        /* chunk bitmap: its bytes in the image are readable */
	uint64_t avail_bytes;  /* bytes of the chunks in avail */
	uint8_t *zeroed;       /* chunk bitmap: available as a zero chunk (never travels) */
	uint64_t zeroed_bytes; /* bytes of the chunks in zeroed: progress leaves them out */
	uint8_t *local;        /* chunk bitmap: written by the local VM */
	uint8_t *holders;      /* per chunk: connected peers that have it (saturating) */
};

/* picker.c: the chunks to fetch in the background. */
struct pick_want {
	uint32_t *list; /* unordered (may hold settled ones, skipped) */
	uint32_t n;
	size_t cap;
	uint32_t dead; /* entries found settled: compacted when many */
	uint64_t rng;  /* xorshift state: tie-breaks, not secrets */
};

/* xfer.c: the transfer pipeline (piece -> verify -> write -> commit) and --basis. */
struct pipeline {
	struct xfer xfers[SWARM_XFER_MAX];
	int nxfers;
	uint8_t *fetching;  /* chunk bitmap: a transfer of it is in progress */
	uint8_t *verifying; /* chunk bitmap: whole, being hashed and written */
	int nverifying;
	struct workq *verifyq; /* hashing and writing chunks (a core's worth of work) */
	struct workq *syncq;   /* store commits (blocking fdatasync); the source's FLUSH */
	int committing;
	uint64_t last_commit_ns;
	struct flush_waiter *flush_next; /* waiting for a commit not yet started */
	struct flush_waiter *flush_cur;  /* waiting for the running commit */
	int basis_fd;                    /* --basis file, or -1 */
	uint32_t *basis_q;               /* chunks to look for in the basis (a stack) */
	uint32_t nbasis_q;
	size_t basis_cap;
};

/* gens.c: generations, deltas and newer roots. */
struct gens {
	uint8_t *stale;      /* chunk bitmap: changed by a delta while being verified */
	uint8_t *changed;    /* chunk bitmap: changed by a delta, not yet asked for again */
	uint8_t *last_delta; /* the newest delta we made (live.c) or applied, for peers behind */
	size_t last_delta_len;
};

/* live.c: the live source (seed -e). */
struct live {
	uint8_t *dirty;       /* chunks the VM wrote since they were hashed */
	uint8_t *rehash;      /* chunks being hashed in the current round */
	uint32_t *dirty_list; /* the dirty chunks, in the order they became dirty */
	uint32_t ndirty;
	size_t dirty_cap;
	struct rehash_job **round; /* the round being hashed */
	uint32_t nround, round_left;
	uint64_t last_round_ns;
	struct event *round_ev; /* starts the next round */
	int frozen;             /* writes refused, final generation due */
	struct flush_waiter *freeze_waiters;
	double write_tokens; /* --max-dirty-rate: bytes the VM may write now */
	uint64_t tokens_ns;
	struct event *throttle_ev; /* wakes writes waiting for tokens */
	struct workq *hashq;       /* rehashing (a plain seed's rechecks too) */
	uint64_t *carried; /* --write-through: per chunk, 1 + generation a destination holds */
	struct flush_waiter *wt_waiters; /* --write-through: writes not yet acknowledged */
};

/* export.c (faults; their latencies: swarm.c): the VM's reads waiting at a destination. */
struct faults {
	uint8_t *urgent; /* chunk bitmap: faulted on, fetch before anything else */
	uint32_t *list;  /* the same chunks, in fault order */
	uint32_t nlist;
	size_t list_cap;
	struct fault_wait *table; /* since when each waits (a hash table) */
	uint32_t ntable, table_cap;
	struct swarm_fault_hist hist;
};

/* export.c: what the NBD export asked to be told. */
struct exporting {
	void (*chunk_cb)(void *arg, uint32_t chunk);
	void *chunk_cb_arg;
	struct event *wake_ev; /* runs chunk_cb from the loop (chunk_wake) */
	uint32_t wake_chunk;   /* the chunk to wake for, or SWARM_ALL_CHUNKS */
	int wake_pending;
	void (*ready_cb)(void *arg);
	void *ready_cb_arg;
	int keep_running; /* an export is served: do not exit when complete */
};

/* swarm.c: whole-process rates for status. */
struct rates {
	uint64_t last_ns;
	struct swarm_stats last; /* counters at the last rate update */
	double fetch, serve, write;
};

/*
 * What the picker reads of the swarm, for one decision (the swarm builds it
 * anew for each: every decision it acts on changes what it holds).
 */
struct pick_view {
	const uint8_t *avail;     /* chunk bitmaps: readable, */
	const uint8_t *local;     /* written by the local VM, */
	const uint8_t *verifying; /* whole and being verified, */
	const uint8_t *fetching;  /* being fetched */
	const uint8_t *holders;   /* per chunk: connected peers that have it (saturating) */
	struct manifest_entry *const *entries; /* per page of the chunk table: loaded, or NULL */
	const struct xfer *xfers;              /* the transfers in progress */
	int nxfers;
	int nverifying;    /* chunks being verified */
	int pages_unasked; /* a page of the chunk table is not asked for yet */
};

/* What to do about a fault (pick_fault). */
enum pick_act {
	PICK_NONE,  /* nothing now: settled, asked at this priority already, or no room */
	PICK_PAGE,  /* ask for its page of the chunk table first */
	PICK_RAISE, /* ask the transfer of it again at the fault's priority */
	PICK_START, /* start a transfer of it, from pick_peer_for's choice */
};

/* Add chunk c to the want list (the background's). */
void pick_want_push(struct pick_want *w, uint32_t c);
/* Background bytes to keep outstanding to a peer (see SWARM_PIPELINE_MS). */
uint64_t pick_pipeline_cap(const struct pick_peer *p);
/*
 * The next chunk to ask peer sp for in the background, taken out of w: 0
 * and *chunk, or -1 if none now (sp answered BUSY before now, its pipeline
 * is full, the transfer table or the verifiers are full, or it has nothing
 * we want). Rarest first; once nothing is left to ask for and every page
 * was asked for, endgame: a second copy of a chunk still on its way.
 */
int pick_background(struct pick_want *w, const struct pick_view *v, struct speer *sp, uint64_t now,
                    uint32_t *chunk);
/*
 * Put peers (n, to be filled in the background) in the order to fill them:
 * the other destinations first, the source last. The source's upload is the
 * swarm's scarcest: keep it for the chunks only the source has.
 */
void pick_fill_order(struct speer **peers, int n);
/*
 * The peer to ask for chunk c ahead of the background (a fault, a readahead
 * hint): of peers, one that has it; the source first, then the least
 * loaded. NULL if none has it.
 */
struct speer *pick_peer_for(struct speer *const *peers, int n, uint32_t c);
/*
 * What to do about a fault on chunk c, to be fetched at priority prio (on
 * PICK_RAISE, *xfer is the transfer's index). Faults go past the pipeline
 * bounds: only a full transfer table stops them.
 */
enum pick_act pick_fault(const struct pick_view *v, uint32_t c, uint8_t prio, int *xfer);
/* A readahead hint for chunk c may start a transfer (nothing is in flight for it). */
int pick_readahead(const struct pick_view *v, uint32_t c);
/*
 * A destination announced chunk c: the source's transfer of it to take back
 * (asked in the background, nothing of it arrived yet), or -1.
 */
int pick_offload(const struct pick_view *v, uint32_t c);

/*
 * One volume's swarm, in either role. The parts belong to the file named
 * above their type; the rest is the lifecycle's (swarm.c) and, at a
 * destination, the volume's (fetch.c).
 */
struct swarm {
	struct swarm_opts o;
	struct swarm_stats st;
	int result; /* 0 running/ok, -1 failed */
	int finished;
	int check;          /* P2PVBD_CHECK set: verify the page counts after each event (tests) */
	struct event *tick; /* reconnects, commits, give-up check */

	/* A destination's volume (fetch.c). */
	int have_root;
	struct manifest_root root;
	struct store store;
	int store_open;
	int complete;
	uint64_t last_progress_ns;
	uint64_t stall_reported_ns; /* last_progress_ns when a stall was last reported */

	struct conns conn;
	struct serving serve;
	struct receipts receipts;
	struct pages pages;
	struct chunks chunks;
	struct pick_want want;
	struct pipeline pipe;
	struct gens gens;
	struct live live;
	struct faults faults;
	struct exporting exp;
	struct rates rates;
};

static void fetch_schedule(struct swarm *sw);
static void on_have(struct speer *sp, const struct wire_msg *m);
static void fetch_check_complete(struct swarm *sw);
static void fault_settled(struct swarm *sw, uint32_t c);
static void peer_rates_update(struct swarm *sw, double dt);

/*
 * End the run. Peers are told and given a moment to receive what is still
 * queued for them (a receipt acknowledgement, an ERROR) before the loop exits.
 */
static void finish_run(struct swarm *sw, int result)
{
	struct timeval grace = {0, 300000};

	if (sw->finished)
		return;
	sw->finished = 1;
	sw->result = result;
	for (struct speer *sp = sw->conn.peers, *next; sp; sp = next) {
		next = sp->next;
		if (sp->p->state == PEER_READY)
			peer_close_error(sp->p, WIRE_E_SHUTDOWN, "%s",
			                 result == 0 ? "done" : "shutting down");
	}
	event_base_loopexit(sw->o.base, &grace);
}

/* ---- Serving ---------------------------------------------------------- */

static int is_seed(const struct swarm *sw)
{
	return sw->o.role == SWARM_SEED;
}

static uint32_t chunk_count(const struct swarm *sw)
{
	return sw->o.role == SWARM_SEED ? sw->o.manifest->root.chunk_count : sw->root.chunk_count;
}

static const struct manifest_root *root_of(const struct swarm *sw)
{
	return sw->o.role == SWARM_SEED ? &sw->o.manifest->root : &sw->root;
}

static int root_final(const struct swarm *sw)
{
	return (root_of(sw)->flags & MANIFEST_ROOT_F_FINAL) != 0;
}

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

static int serve_fill(void *arg, uint8_t *dst, size_t len, uint64_t off)
{
	struct swarm *sw = arg;
	ssize_t n;

	if (sw->o.role == SWARM_FETCH)
		return store_read(&sw->store, off, dst, len);
	n = read_at(sw->o.image_fd, dst, len, off);
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
static void send_root_and_map(struct swarm *sw, struct speer *sp)
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
static void serve_pump(struct speer *sp)
{
	struct swarm *sw = sp->sw;
	const struct manifest_root *r = root_of(sw);

	while (sp->nupq > 0 && sp->p->state == PEER_READY && !peer_out_full(sp->p)) {
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

static void serve_request(struct speer *sp, const struct wire_msg *m)
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

static void serve_cancel(struct speer *sp, const struct wire_block *b)
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

static void serve_page(struct speer *sp, uint32_t page)
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

/*
 * Check a receipt (from a peer, or relayed by a tracker: `via` names it) and
 * count its signer once. NULL if it was good, else why not.
 */
static const char *receipt_take(struct swarm *sw, const uint8_t *blob, size_t len, const char *via)
{
	struct manifest_receipt rc;
	const struct manifest_root *r = root_of(sw);
	char who[2 * VCRYPTO_PK_LEN + 1];
	int known = 0;

	if (manifest_receipt_decode(blob, len, &rc) != 0)
		return "malformed or badly signed receipt";
	if (memcmp(rc.volume_id, r->volume_id, MANIFEST_ID_LEN) != 0)
		return "receipt for another volume";
	if (rc.generation != r->generation || memcmp(rc.root_hash, r->root_hash, 32) != 0)
		return "receipt for another generation of the volume";
	if (!(r->flags & MANIFEST_ROOT_F_FINAL))
		return "the source is not frozen yet: no generation is final";
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
	hex_encode(rc.signer, VCRYPTO_PK_LEN, who);
	log_info("receipt from %s (%s): holds generation %llu complete", who, via,
	         (unsigned long long)rc.generation);
	return NULL;
}

/* With --exit-after-receipts: finish once enough were counted. Closes the peers. */
static void receipts_check_enough(struct swarm *sw)
{
	if (sw->o.exit_after_receipts > 0 && !sw->finished &&
	    sw->st.receipts >= (uint64_t)sw->o.exit_after_receipts) {
		log_info("%llu receipts received: the source's data is no longer needed",
		         (unsigned long long)sw->st.receipts);
		finish_run(sw, 0);
	}
}

static void serve_receipt(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	struct wire_msg ack = {.type = WIRE_RECEIPT_ACK};
	char via[100];
	const char *why;

	snprintf(via, sizeof(via), "peer %s", sp->p->name);
	why = receipt_take(sw, m->u.blob.data, m->u.blob.len, via);
	if (why != NULL) {
		log_warn("peer %s: %s", sp->p->name, why);
		ack.u.error.code = WIRE_E_BAD_RECEIPT;
		ack.u.error.text = why;
		ack.u.error.text_len = (uint16_t)strlen(why);
	}
	peer_send(sp->p, &ack);
	receipts_check_enough(sw); /* last: it may close sp */
}

/* ---- Fetching --------------------------------------------------------- */

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
static void have_clear(struct swarm *sw, struct speer *sp, uint32_t c)
{
	if (!bit_get(sp->pk.have, c))
		return;
	bit_clear(sp->pk.have, c);
	sp->nhave--;
	if (sw->chunks.holders[c] > 0)
		sw->chunks.holders[c]--;
}

static const struct manifest_entry *entry_of(const struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *pe = sw->pages.entries[c / MANIFEST_PAGE_ENTRIES];

	return pe ? &pe[c % MANIFEST_PAGE_ENTRIES] : NULL;
}

/*
 * Page pg is no longer asked for, loaded or done: its request was lost (its
 * peer left, or the answer was of another generation), or a newer root or
 * delta changed it. The window asks for it again, in order.
 */
static void page_unask(struct swarm *sw, uint32_t pg)
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

static void page_done(struct swarm *sw, uint32_t page)
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
static void check_pages(struct swarm *sw, const char *after)
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
	sw->faults.urgent = bitmap_new(sw->root.chunk_count);
	sw->pipe.fetching = bitmap_new(sw->root.chunk_count);
	sw->chunks.holders = xcalloc(sw->root.chunk_count, 1);
	if (manifest_root_encode(&sw->root, &sw->serve.root_blob, &sw->serve.root_blob_len) != 0)
		fatal("cannot encode the manifest root");
	for (struct speer *o = sw->conn.peers; o; o = o->next)
		if (o->wants_root && o->p->state == PEER_READY)
			send_root_and_map(sw, o);
	if (sw->exp.ready_cb != NULL)
		sw->exp.ready_cb(sw->exp.ready_cb_arg);
	log_info("volume: %s in %u chunks of %u KiB, generation %llu (from %s)",
	         fmt_bytes(sw->root.image_size, size, sizeof(size)), sw->root.chunk_count,
	         sw->root.chunk_size / 1024, (unsigned long long)sw->root.generation, sp->p->name);
}

static void root_catch_up(struct swarm *sw, struct speer *sp, struct manifest_root *r);
static int chunk_put_zero(struct swarm *sw, uint32_t c, const struct manifest_entry *e);
static void seed_have(struct swarm *sw, const struct wire_msg *m);
static void delta_broadcast(struct swarm *sw, const struct speer *except);

static void on_root(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	struct manifest_root r;

	if (manifest_root_decode(m->u.blob.data, m->u.blob.len, &r) != 0) {
		peer_close_error(sp->p, WIRE_E_PROTOCOL, "malformed manifest root");
		return;
	}
	if (manifest_root_verify(&r, sw->o.source_key) != 0) {
		manifest_root_free(&r);
		log_error("peer %s sent a manifest whose signature does not verify against the "
		          "source key: refusing it",
		          sp->p->name);
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
			/* It is behind: our newest delta tells it (and it asks us for our root). */
			struct wire_msg d = {.type = WIRE_DELTA};

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
		root_adopt(sw, sp, &r);
		if (sw->finished)
			return;
	}
	sp->root_seen = 1;
	if (sp->pk.have == NULL)
		sp->pk.have = bitmap_new(sw->root.chunk_count);
	fetch_schedule(sw);
}

static void on_have_map(struct speer *sp, const struct wire_msg *m)
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

/*
 * Chunk c (generation gen) is verified and in the image: serve it, and
 * (announce != 0) tell the peers that have our have-map. Once written it can
 * be served: other destinations need not wait for our fdatasync.
 */
static void serve_add(struct swarm *sw, uint32_t c, uint64_t gen, int announce)
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
				if (sp->map_sent && sp->p->state == PEER_READY)
					send_have_map(sw, sp);
		}
	}
	if (!announce)
		return;
	m.u.have.chunk = c;
	m.u.have.gen = gen;
	/* The source hears of it too: its write-through mode waits for that. */
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if ((sp->map_sent || (sp->p->is_source && !is_seed(sw))) &&
		    sp->p->state == PEER_READY)
			peer_send(sp->p, &m);
}

/* Chunk c's bytes in the image are final (fetched, zero, resumed or the VM's). */
static void avail_set(struct swarm *sw, uint32_t c)
{
	if (bit_get(sw->chunks.avail, c))
		return;
	if (bit_get(sw->faults.urgent, c))
		fault_settled(sw, c);
	bit_set(sw->chunks.avail, c);
	sw->chunks.avail_bytes += manifest_chunk_len(&sw->root, c);
}

/*
 * The export's requests waiting for chunk c (SWARM_ALL_CHUNKS: for any) may
 * go now. They are woken from the loop, never from here: a woken request
 * calls back into the swarm (a write makes chunks local, a read faults),
 * which must not happen in the middle of the bookkeeping that made c
 * available (a page being loaded, a delta being applied, a chunk being
 * added to the served set).
 */
static void chunk_wake(struct swarm *sw, uint32_t c)
{
	if (sw->exp.chunk_cb == NULL)
		return;
	if (!sw->exp.wake_pending)
		sw->exp.wake_chunk = c;
	else if (sw->exp.wake_chunk != c)
		sw->exp.wake_chunk = SWARM_ALL_CHUNKS;
	sw->exp.wake_pending = 1;
	event_active(sw->exp.wake_ev, 0, 0);
}

static void chunk_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct swarm *sw = arg;

	(void)fd;
	(void)what;
	if (!sw->exp.wake_pending)
		return;
	sw->exp.wake_pending = 0;
	if (sw->exp.chunk_cb != NULL)
		sw->exp.chunk_cb(sw->exp.chunk_cb_arg, sw->exp.wake_chunk);
}

/* Chunk c can be read from the image now: tell the export. */
static void chunk_now_available(struct swarm *sw, uint32_t c)
{
	avail_set(sw, c);
	bit_clear(sw->faults.urgent, c);
	chunk_wake(sw, c);
}

static void fetch_urgent(struct swarm *sw, uint32_t c);

static void on_page(struct speer *sp, const struct wire_msg *m)
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
			log_debug("peer %s: page %u of generation %llu, we hold %llu", sp->p->name,
			          page, (unsigned long long)m->u.page.root_gen,
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
		          sp->p->name, page);
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
		uint64_t g = store_gen_of(&sw->store, c);

		if (s == STORE_LOCAL || bit_get(sw->chunks.local, c)) {
			/* The local VM's data: never fetched again. */
			bit_set(sw->chunks.local, c);
			avail_set(sw, c);
		} else if (bit_get(sw->chunks.avail, c) && g == e[i].gen) {
			/* Held already (the page came back after a delta changed another chunk). */
		} else if (bit_get(sw->pipe.verifying, c)) {
			left++; /* verify_done settles it against this entry */
		} else if (e[i].flags & MANIFEST_F_ZERO) {
			sw->st.chunks_zero++;
			if (!(s == STORE_ZERO && g == e[i].gen) &&
			    store_put_zero(&sw->store, c, e[i].gen) != 0) {
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
		} else if (s == STORE_PRESENT && g == e[i].gen) {
			sw->st.chunks_resumed++;
			serve_add(sw, c, g, 1);
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

static struct xfer *xfer_any(struct swarm *sw, uint32_t chunk);

static void xfer_drop(struct swarm *sw, struct xfer *x, int requeue)
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
static void xfer_cancel(struct swarm *sw, struct xfer *x, int requeue)
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
static void xfer_cancel_chunk(struct swarm *sw, uint32_t c)
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
static void xfer_start(struct swarm *sw, struct speer *sp, uint32_t c, uint8_t prio)
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
static void xfer_raise(struct xfer *x, uint8_t prio)
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

static void commit_start(struct swarm *sw);

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
		store_put_end(&sw->store, j->chunk, j->gen);
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
		if (sw->store.pending_bytes >= SWARM_COMMIT_BYTES)
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
static void basis_pump(struct swarm *sw)
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
static void fetch_chunk_done(struct swarm *sw, struct xfer *x)
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
	j->from_source = x->from->p->is_source;
	j->basis_fd = -1;
	snprintf(j->from_name, sizeof(j->from_name), "%s", x->from->p->name);
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

static void commit_start(struct swarm *sw);

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
	while (w != NULL) {
		struct flush_waiter *next = w->next;

		w->fn(w->arg, result);
		free(w);
		w = next;
	}
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
static void commit_start(struct swarm *sw)
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

/* ---- Generations (fetch side): deltas and newer roots ------------------ */

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
static int chunk_put_zero(struct swarm *sw, uint32_t c, const struct manifest_entry *e)
{
	uint32_t page = c / MANIFEST_PAGE_ENTRIES;

	if (store_put_zero(&sw->store, c, e->gen) != 0)
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

/* Our root is older than r (signed, same volume): take r; changed pages are fetched again. */
static void root_catch_up(struct swarm *sw, struct speer *sp, struct manifest_root *r)
{
	int was_final = root_final(sw);

	log_info("peer %s holds generation %llu, we hold %llu: catching up", sp->p->name,
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
}

/*
 * A DELTA (PROTOCOL.md §9): the next one is verified, applied and passed on
 * to our other peers; an older one (a replay, or one that reached us twice)
 * is ignored; a newer one means we missed some: we ask its sender for its
 * root. One that does not verify is a forgery: its sender is dropped.
 */
static void on_delta(struct speer *sp, const struct wire_msg *m)
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
		          sp->p->name, (unsigned long long)d.old_gen, (unsigned long long)d.new_gen,
		          (unsigned long long)sw->root.generation);
		manifest_delta_free(&d);
		return;
	}
	if (d.old_gen > sw->root.generation) {
		struct wire_msg g = {.type = WIRE_GET_ROOT};

		log_info("peer %s: delta %llu -> %llu, we hold %llu: asking for its root",
		         sp->p->name, (unsigned long long)d.old_gen, (unsigned long long)d.new_gen,
		         (unsigned long long)sw->root.generation);
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
		          sp->p->name, (unsigned long long)d.old_gen,
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
	          sp->p->name, d.nchanges,
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

static void on_piece(struct speer *sp, const struct wire_msg *m)
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
		          sp->p->name, m->u.piece.chunk);
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
		fetch_chunk_done(sw, x);
	fetch_schedule(sw);
}

static void on_reject(struct speer *sp, const struct wire_msg *m)
{
	struct swarm *sw = sp->sw;
	const struct wire_block *b = &m->u.reject.blk;
	struct xfer *x = sw->have_root ? xfer_find(sw, b->chunk, sp) : NULL;

	if (x == NULL || x->gen != b->gen)
		return; /* the transfer was already given up (maybe asked again since) */
	xfer_uncount(sp, x);
	if (m->u.reject.code == WIRE_E_BUSY) {
		/* No upload slot for us there now: ask others for a while. */
		log_debug("peer %s is busy (chunk %u)", sp->p->name, b->chunk);
		sp->pk.busy_until_ns = now_ns() + (uint64_t)SWARM_BUSY_BACKOFF_MS * NS_PER_MS;
	} else if (m->u.reject.code == WIRE_E_GENERATION) {
		/* Changed there (the source's VM wrote it, or one of us is behind): a
		 * HAVE at the new generation comes once it is published. */
		log_debug("peer %s: chunk %u is not at generation %llu there", sp->p->name,
		          b->chunk, (unsigned long long)b->gen);
		have_clear(sw, sp, b->chunk);
	} else {
		log_warn("peer %s rejected chunk %u: %s", sp->p->name, b->chunk,
		         wire_code_name(m->u.reject.code));
		/* Another peer may have it; this one said it does not. */
		have_clear(sw, sp, b->chunk);
	}
	xfer_drop(sw, x, 1);
	fetch_schedule(sw);
}

static void on_receipt_ack(struct speer *sp, const struct wire_msg *m)
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
		if (sp->p->state == PEER_READY && sp->p->is_source && sp->root_seen)
			best = sp;
	for (struct speer *sp = sw->conn.peers; sp && best == NULL; sp = sp->next)
		if (sp->p->state == PEER_READY && sp->root_seen && sp->pk.have != NULL &&
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
static struct pick_view pick_view_of(const struct swarm *sw)
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
		if (sp->root_seen && sp->p->state == PEER_READY)
			peers[n++] = sp;
	return n;
}

/* The peer to ask for chunk c ahead of the background (pick_peer_for), or NULL. */
static struct speer *best_peer_for(struct swarm *sw, uint32_t c)
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
static void fetch_urgent(struct swarm *sw, uint32_t c)
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

static void fetch_schedule(struct swarm *sw)
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
static void on_have(struct speer *sp, const struct wire_msg *m)
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
	if (!sp->p->is_source)
		source_offload(sw, m->u.have.chunk);
	if (bit_get(sw->gens.changed, m->u.have.chunk)) {
		/* Changed by the source's VM: ahead of the background, so that
		 * the copy converges (and write-through writes complete). */
		bit_clear(sw->gens.changed, m->u.have.chunk);
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
		manifest_receipt_sign(&rc, sw->o.identity);
		manifest_receipt_encode(&rc, sw->receipts.blob);
		sw->receipts.made = 1;
	}
	return sw->receipts.blob;
}

/* Send the receipt to the source, if connected (trackers get it in fetch_check_complete). */
static void send_receipt(struct swarm *sw)
{
	struct wire_msg m = {.type = WIRE_RECEIPT};

	m.u.blob.data = receipt_blob(sw);
	m.u.blob.len = MANIFEST_RECEIPT_LEN;
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if (sp->p->state == PEER_READY && sp->p->is_source && root_final(sw) &&
		    peer_send(sp->p, &m) == 0) {
			sw->receipts.sent = 1;
			log_info("sent completion receipt to the source (%s)", sp->p->name);
			return;
		}
}

static void fetch_check_complete(struct swarm *sw)
{
	if (sw->complete || sw->pages.done < sw->root.page_count || sw->pipe.nxfers > 0 ||
	    sw->pipe.nverifying > 0)
		return;
	/* Everything is written: complete once the last of it is durable. */
	if (sw->pipe.committing || sw->store.npending > 0) {
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

/* ---- The picker: which chunk to ask which peer for (pure policy) ------- */

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

/*
 * Rarest first: of the wanted chunks that a peer has (have) and nobody is
 * fetching, one held by the fewest connected peers; among equals, the first
 * after a random start, so that destinations pick different chunks. Returns
 * its index in w or -1; *live says whether any wanted chunk is still
 * unrequested.
 */
static long pick_rarest(struct pick_want *w, const struct pick_view *v, const uint8_t *have,
                        int *live)
{
	uint32_t n = w->n, start, best_n = UINT32_MAX;
	long best = -1;

	*live = 0;
	if (n == 0)
		return -1;
	start = rand_below(w, n);
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = start + k < n ? start + k : start + k - n, c = w->list[i];

		if (settled_or_busy(v, c)) {
			w->dead++;
			continue;
		}
		*live = 1;
		if (!bit_get(have, c) || !entry_known(v, c))
			continue;
		if (v->holders[c] < best_n) {
			best_n = v->holders[c];
			best = (long)i;
			if (best_n <= 1)
				break; /* only this peer has it: none is rarer */
		}
	}
	return best;
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

/* ---- Peers ------------------------------------------------------------ */

static struct speer *speer_new(struct swarm *sw, int addr)
{
	struct speer *sp = xcalloc(1, sizeof(*sp));

	sp->sw = sw;
	sp->addr = addr;
	sp->id = ++sw->conn.next_id;
	sp->cur_chunk = -1;
	sp->next = sw->conn.peers;
	sw->conn.peers = sp;
	sw->conn.npeers++;
	return sp;
}

static void speer_unlink_free(struct swarm *sw, struct speer *sp)
{
	for (struct speer **pp = &sw->conn.peers; *pp; pp = &(*pp)->next)
		if (*pp == sp) {
			*pp = sp->next;
			sw->conn.npeers--;
			break;
		}
	free(sp->pk.have);
	free(sp);
}

/* A READY peer other than sp that authenticated with key id, or NULL. */
static struct speer *speer_by_identity(struct swarm *sw, const uint8_t *id, const struct speer *sp)
{
	for (struct speer *o = sw->conn.peers; o; o = o->next)
		if (o != sp && o->p->state == PEER_READY &&
		    memcmp(o->p->identity, id, VCRYPTO_PK_LEN) == 0)
			return o;
	return NULL;
}

/*
 * Two processes may connect to each other at once, or reach each other by two
 * addresses (the URI's and a tracker's): keep one connection per pair. Both
 * ends decide alike: the one opened by the side with the smaller key stays.
 * Returns 1 if sp was closed (a duplicate, or ourselves).
 */
static int drop_duplicate(struct swarm *sw, struct speer *sp)
{
	struct peer *p = sp->p;
	struct speer *o;
	int mine_smaller;

	if (memcmp(p->identity, sw->o.identity->pk, VCRYPTO_PK_LEN) == 0) {
		if (sp->addr >= 0)
			sw->conn.addrs[sp->addr].dead = 1;
		peer_close(p, "this is ourselves");
		return 1;
	}
	o = speer_by_identity(sw, p->identity, sp);
	if (o == NULL)
		return 0;
	mine_smaller = memcmp(sw->o.identity->pk, p->identity, VCRYPTO_PK_LEN) < 0;
	if (p->initiator == mine_smaller) {
		peer_close(o->p, "duplicate connection");
		return 0;
	}
	peer_close(p, "duplicate connection");
	return 1;
}

static void on_ready(struct peer *p)
{
	struct speer *sp = p->owner;
	struct wire_msg m = {.type = WIRE_GET_ROOT};

	sp->pk.is_source = p->is_source;
	if (sp->addr >= 0) {
		struct addr *a = &sp->sw->conn.addrs[sp->addr];

		a->backoff_s = 0;
		a->fails = 0;
		a->have_identity = 1;
		memcpy(a->identity, p->identity, VCRYPTO_PK_LEN);
	}
	if (drop_duplicate(sp->sw, sp))
		return;
	log_info("peer %s: connected%s", p->name, p->is_source ? " (source)" : "");
	if (sp->sw->o.role == SWARM_FETCH) {
		peer_send(p, &m);
		if (sp->sw->complete && !sp->sw->receipts.sent && root_final(sp->sw))
			send_receipt(sp->sw);
	}
}

/*
 * A peer that keeps asking for roots and pages without reading the replies
 * must not make our output grow without bound: stop reading its requests
 * until the output drains (on_drain -> serve_pump resumes reading).
 */
static void limit_replies(struct speer *sp)
{
	if (sp->p->state == PEER_READY && peer_out_len(sp->p) > SWARM_REPLY_OUT_MAX)
		peer_pause_read(sp->p);
}

static void on_msg(struct peer *p, const struct wire_msg *m)
{
	struct speer *sp = p->owner;
	struct swarm *sw = sp->sw;
	int serving = sw->o.role == SWARM_SEED || sw->have_root;

	switch (m->type) {
	case WIRE_GET_ROOT:
		/* A fetcher without the root yet answers once it has one. */
		if (!serving)
			sp->wants_root = 1;
		else
			send_root_and_map(sw, sp);
		limit_replies(sp);
		return;
	case WIRE_GET_PAGE:
		serve_page(sp, m->u.get_page.page);
		limit_replies(sp);
		return;
	case WIRE_REQUEST:
		serve_request(sp, m);
		return;
	case WIRE_CANCEL:
		serve_cancel(sp, &m->u.cancel);
		return;
	case WIRE_RECEIPT:
		if (sw->o.role != SWARM_SEED) {
			struct wire_msg ack = {.type = WIRE_RECEIPT_ACK};

			ack.u.error.code = WIRE_E_BAD_RECEIPT;
			ack.u.error.text = "not the source";
			ack.u.error.text_len = (uint16_t)strlen(ack.u.error.text);
			peer_send(p, &ack);
			return;
		}
		serve_receipt(sp, m);
		return;
	case WIRE_DELTA:
		if (sw->o.role == SWARM_FETCH)
			on_delta(sp, m);
		return; /* the source makes them */
	case WIRE_HAVE:
		if (sw->o.role == SWARM_SEED) {
			seed_have(sw, m);
			return;
		}
		break;
	default:
		break;
	}
	if (sw->o.role != SWARM_FETCH) {
		peer_close_error(p, WIRE_E_PROTOCOL, "unexpected %s", wire_type_name(m->type));
		return;
	}
	switch (m->type) {
	case WIRE_ROOT:
		on_root(sp, m);
		break;
	case WIRE_PAGE:
		on_page(sp, m);
		break;
	case WIRE_HAVE_MAP:
		on_have_map(sp, m);
		break;
	case WIRE_HAVE:
		on_have(sp, m);
		break;
	case WIRE_PIECE:
		on_piece(sp, m);
		break;
	case WIRE_REJECT:
		on_reject(sp, m);
		break;
	case WIRE_RECEIPT_ACK:
		on_receipt_ack(sp, m);
		break;
	default:
		peer_close_error(p, WIRE_E_PROTOCOL, "unexpected %s", wire_type_name(m->type));
	}
}

static void on_drain(struct peer *p)
{
	serve_pump(p->owner);
}

static void on_close(struct peer *p, int fatal_err, const char *reason)
{
	struct speer *sp = p->owner;
	struct swarm *sw = sp->sw;

	if (sp->addr >= 0) {
		struct addr *a = &sw->conn.addrs[sp->addr];

		a->sp = NULL;
		snprintf(a->last_error, sizeof(a->last_error), "%s", reason);
		if (fatal_err || (a->learned && ++a->fails >= SWARM_LEARNED_TRIES))
			a->dead = 1;
		a->backoff_s = a->backoff_s ? a->backoff_s * 2 : 1;
		if (a->backoff_s > SWARM_BACKOFF_MAX_S)
			a->backoff_s = SWARM_BACKOFF_MAX_S;
		a->next_try_ns = now_ns() + (uint64_t)a->backoff_s * NS_PER_S;
		if (fatal_err)
			log_error("peer %s: %s", p->name, reason);
		else
			log_info("peer %s: disconnected: %s", p->name, reason);
	} else {
		log_info("peer %s: disconnected: %s", p->name, reason);
	}
	if (sp->pk.have != NULL)
		for (uint32_t c = 0; c < sw->root.chunk_count; c++)
			have_clear(sw, sp, c);
	if (sp->slot)
		sw->serve.slots_used--;
	/* Give back what was in flight from this peer. */
	for (int i = sw->pipe.nxfers - 1; i >= 0; i--)
		if (sw->pipe.xfers[i].from == sp)
			xfer_drop(sw, &sw->pipe.xfers[i], 1);
	if (sw->pages.status != NULL)
		for (uint32_t pg = 0; pg < sw->root.page_count; pg++)
			if (sw->pages.status[pg] == PAGE_ASKED && sw->pages.from[pg] == sp)
				page_unask(sw, pg);
	speer_unlink_free(sw, sp);
	fetch_schedule(sw);
}

static void conn_dial(struct swarm *sw, int i)
{
	struct addr *a = &sw->conn.addrs[i];
	struct speer *sp = speer_new(sw, i);

	a->sp = sp;
	sp->p = peer_connect(&sw->conn.ctx, a->where.host, a->where.port, sp);
	if (sp->p == NULL) {
		/* Failed at once; peer_connect does not call on_close then. */
		a->sp = NULL;
		a->next_try_ns = now_ns() + NS_PER_S;
		speer_unlink_free(sw, sp);
	}
}

/*
 * Dial the addresses whose back-off has passed, within the bounds on
 * connections. Returns how many addresses are still worth trying.
 */
static int conn_redial(struct swarm *sw, uint64_t now)
{
	int alive = 0, outgoing = 0;

	for (int i = 0; i < sw->conn.naddrs; i++)
		outgoing += sw->conn.addrs[i].sp != NULL;
	for (int i = 0; i < sw->conn.naddrs; i++) {
		struct addr *a = &sw->conn.addrs[i];

		if (a->dead)
			continue;
		alive++;
		if (a->sp != NULL || now < a->next_try_ns)
			continue;
		/* Already connected to that process, by its own connection to us. */
		if (a->have_identity && speer_by_identity(sw, a->identity, NULL) != NULL)
			continue;
		if (outgoing >= SWARM_CONNECT_MAX || sw->conn.npeers >= SWARM_PEERS_MAX)
			break;
		conn_dial(sw, i);
		outgoing++;
	}
	return alive;
}

/* Log each address's last error (the run is about to fail for want of peers). */
static void conn_log_errors(const struct swarm *sw)
{
	for (int i = 0; i < sw->conn.naddrs; i++)
		log_error("  %s:%u: %s", sw->conn.addrs[i].where.host, sw->conn.addrs[i].where.port,
		          sw->conn.addrs[i].last_error[0] ? sw->conn.addrs[i].last_error : "?");
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct swarm *sw = arg;
	struct speer *sp;

	(void)l;
	if (sw->conn.npeers >= SWARM_PEERS_MAX || sw->finished) {
		log_debug("refusing a connection: %d peers already", sw->conn.npeers);
		evutil_closesocket(fd);
		return;
	}
	sp = speer_new(sw, -1);
	sp->p = peer_accept(&sw->conn.ctx, fd, sa, salen, sp);
	if (sp->p == NULL)
		speer_unlink_free(sw, sp);
}

/* Update every peer's measured delivery rate (bytes/s, smoothed over about a second). */
static void rates_update(struct swarm *sw, uint64_t now)
{
	double dt = (double)(now - sw->rates.last_ns) / NS_PER_S;

	if (sw->rates.last_ns == 0 || dt <= 0) {
		sw->rates.last_ns = now;
		return;
	}
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		double inst = (double)sp->rx_bytes / dt;

		sp->pk.rate = sp->pk.rate == 0 ? inst : 0.75 * sp->pk.rate + 0.25 * inst;
		sp->rx_bytes = 0;
	}
	peer_rates_update(sw, dt);
	/* Whole-process rates for status: smoothed over about 2 s. */
	{
		double f = (double)(sw->st.bytes_fetched - sw->rates.last.bytes_fetched) / dt;
		double v = (double)(sw->st.bytes_served - sw->rates.last.bytes_served) / dt;
		double w = (double)(sw->st.bytes_written - sw->rates.last.bytes_written) / dt;

		sw->rates.fetch = 0.9 * sw->rates.fetch + 0.1 * f;
		sw->rates.serve = 0.9 * sw->rates.serve + 0.1 * v;
		sw->rates.write = 0.9 * sw->rates.write + 0.1 * w;
		sw->rates.last = sw->st;
	}
	sw->rates.last_ns = now;
}

/*
 * If a peer was turned away for want of an upload slot, take the slot held
 * longest and free it (its peer is told BUSY at its next request and asks
 * elsewhere); the waiting peer gets it with its next request.
 */
static void rotate_slots(struct swarm *sw, uint64_t now)
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
		log_debug("upload slot of %s goes to a waiting peer", oldest->p->name);
		oldest->slot = 0;
		oldest->no_slot_until_ns = now + 2ull * SWARM_BUSY_BACKOFF_MS * NS_PER_MS;
		sw->serve.slots_used--;
	}
}

/*
 * No progress for a while and not complete: say once what the volume waits
 * for, so that an operator (or a failed test's log) shows where it stands.
 */
static void report_stall(struct swarm *sw)
{
	static const char *const page_state[] = {"not asked", "asked", "loaded", "done"};
	uint32_t missing = 0, first = UINT32_MAX, holders = 0;

	if (!sw->have_root) {
		log_info("no progress for %d s: no peer has sent the manifest root yet",
		         SWARM_STALL_REPORT_S);
		return;
	}
	for (uint32_t c = 0; c < sw->root.chunk_count; c++)
		if (!bit_get(sw->chunks.avail, c)) {
			if (missing++ == 0)
				first = c;
		}
	if (first != UINT32_MAX)
		holders = sw->chunks.holders[first];
	log_info("no progress for %d s at generation %llu%s: %u of %u chunks missing, %u of %u "
	         "pages settled, %d transfers, %d verifying, %zu chunks to commit%s",
	         SWARM_STALL_REPORT_S, (unsigned long long)sw->root.generation,
	         root_final(sw) ? " (final)" : "", missing, sw->root.chunk_count, sw->pages.done,
	         sw->root.page_count, sw->pipe.nxfers, sw->pipe.nverifying,
	         (size_t)sw->store.npending, sw->pipe.committing ? ", committing" : "");
	for (uint32_t pg = 0; pg < sw->root.page_count; pg++)
		if (sw->pages.status[pg] == PAGE_LOADED)
			log_info("  page %u: loaded, %u chunks not settled", pg,
			         sw->pages.left[pg]);
		else if (sw->pages.status[pg] != PAGE_DONE)
			log_info("  page %u: %s", pg, page_state[sw->pages.status[pg]]);
	if (first != UINT32_MAX)
		log_info("  first missing chunk %u: held by %u connected peer(s)%s%s%s", first,
		         holders, bit_get(sw->pipe.fetching, first) ? ", being fetched" : "",
		         bit_get(sw->gens.changed, first) ? ", changed by a delta" : "",
		         bit_get(sw->faults.urgent, first) ? ", faulted on" : "");
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct swarm *sw = arg;
	uint64_t now = now_ns();
	int alive;

	(void)fd;
	(void)what;
	if (sw->finished)
		return;
	rates_update(sw, now);
	rotate_slots(sw, now);
	if (sw->o.role != SWARM_FETCH)
		return;
	if (sw->store.npending > 0 &&
	    now - sw->pipe.last_commit_ns >= (uint64_t)SWARM_COMMIT_MS * NS_PER_MS)
		commit_start(sw);
	alive = conn_redial(sw, now);
	if (sw->complete) {
		if (!root_final(sw))
			return;
		if (!sw->receipts.sent)
			send_receipt(sw);
		if (now >= sw->receipts.deadline_ns && !sw->st.receipt_acked &&
		    !sw->receipts.warned) {
			log_warn("neither the source nor a tracker acknowledged our receipt "
			         "within %d s",
			         SWARM_RECEIPT_WAIT_S);
			sw->receipts.warned = 1;
			if (!sw->exp.keep_running)
				finish_run(sw, 0);
		}
		return;
	}
	/* --lazy fetches only what the VM reads: while it asks for nothing, nothing is late. */
	if (sw->o.lazy && sw->have_root && sw->faults.nlist == 0)
		sw->last_progress_ns = now;
	if (alive == 0 && sw->conn.ntrackers == 0) {
		log_error("no usable peer left; last errors:");
		conn_log_errors(sw);
		finish_run(sw, -1);
		return;
	}
	if (now - sw->last_progress_ns > (uint64_t)SWARM_STALL_REPORT_S * NS_PER_S &&
	    sw->stall_reported_ns != sw->last_progress_ns) {
		sw->stall_reported_ns = sw->last_progress_ns;
		report_stall(sw);
	}
	if (sw->o.give_up_s > 0 &&
	    now - sw->last_progress_ns > (uint64_t)sw->o.give_up_s * NS_PER_S) {
		log_error("no progress for %d s; giving up (last errors:)", sw->o.give_up_s);
		conn_log_errors(sw);
		finish_run(sw, -1);
	}
}

/* ---- Trackers --------------------------------------------------------- */

/* Remember a peer address; forgets dead learned ones to make room. 0, or -1 if full. */
static int addr_add(struct swarm *sw, const struct uri_peer *where, int learned)
{
	for (int i = 0; i < sw->conn.naddrs; i++)
		if (sw->conn.addrs[i].where.port == where->port &&
		    strcmp(sw->conn.addrs[i].where.host, where->host) == 0)
			return 0;
	if (sw->conn.naddrs >= SWARM_ADDRS_MAX) {
		/* Compact: drop learned addresses that are dead and not in use. */
		int j = 0;

		for (int i = 0; i < sw->conn.naddrs; i++) {
			struct addr *a = &sw->conn.addrs[i];

			if (a->learned && a->dead && a->sp == NULL)
				continue;
			if (j != i) {
				sw->conn.addrs[j] = *a;
				if (a->sp != NULL)
					a->sp->addr = j;
			}
			j++;
		}
		sw->conn.naddrs = j;
		if (sw->conn.naddrs >= SWARM_ADDRS_MAX)
			return -1;
	}
	sw->conn.addrs = xgrow(sw->conn.addrs, &sw->conn.addrs_cap, (size_t)sw->conn.naddrs,
	                       sizeof(*sw->conn.addrs), 16);
	memset(&sw->conn.addrs[sw->conn.naddrs], 0, sizeof(sw->conn.addrs[0]));
	sw->conn.addrs[sw->conn.naddrs].where = *where;
	sw->conn.addrs[sw->conn.naddrs].learned = learned;
	sw->conn.naddrs++;
	return 0;
}

static void on_tracker_peers(void *arg, const struct treply_peer *peers, int n)
{
	struct swarm *sw = arg;
	int added = 0;

	if (sw->o.role != SWARM_FETCH || sw->finished)
		return; /* the source only serves: destinations come to it */
	for (int i = 0; i < n; i++) {
		struct uri_peer w;
		int before = sw->conn.naddrs;

		memset(&w, 0, sizeof(w));
		if (inet_ntop(peers[i].family == 4 ? AF_INET : AF_INET6, peers[i].addr, w.host,
		              sizeof(w.host)) == NULL)
			continue;
		w.port = peers[i].port;
		if (addr_add(sw, &w, 1) != 0)
			break;
		added += sw->conn.naddrs > before;
	}
	if (added > 0)
		log_info("trackers: %d new peer address%s (%d known)", added,
		         added == 1 ? "" : "es", sw->conn.naddrs);
}

static void on_tracker_counters(void *arg, uint64_t *up, uint64_t *down, uint64_t *left)
{
	struct swarm *sw = arg;
	uint64_t done, total;

	*up = sw->st.bytes_served;
	*down = sw->st.bytes_fetched;
	swarm_progress(sw, &done, &total);
	if (sw->o.role == SWARM_SEED || sw->complete)
		*left = 0;
	else
		*left = total ? total - done : 1; /* unknown yet, but not complete */
}

static void on_tracker_receipts(void *arg, const uint8_t *blob, size_t len)
{
	struct swarm *sw = arg;

	if (len % MANIFEST_RECEIPT_LEN != 0) {
		log_warn("a tracker sent receipts of a bad length (%zu bytes)", len);
		return;
	}
	for (size_t off = 0; off < len && !sw->finished; off += MANIFEST_RECEIPT_LEN) {
		const char *why =
		    receipt_take(sw, blob + off, MANIFEST_RECEIPT_LEN, "via a tracker");

		if (why != NULL)
			log_debug("a tracker relayed a receipt we do not count: %s", why);
	}
	receipts_check_enough(sw);
}

static void on_tracker_receipt_posted(void *arg, int ok)
{
	struct swarm *sw = arg;

	if (!ok || sw->finished)
		return;
	sw->st.receipt_acked = 1;
	if (sw->complete && !sw->exp.keep_running)
		finish_run(sw, 0);
}

static const struct tclient_ops announce_ops = {
    .on_peers = on_tracker_peers,
    .counters = on_tracker_counters,
    .on_receipts = on_tracker_receipts,
    .on_receipt_posted = on_tracker_receipt_posted,
};

/* ---- The source's own VM (seed -e): rounds, deltas, freeze ------------- */

/*
 * Every chunk the VM writes becomes dirty (never served at its old hash).
 * Rounds, at most every SWARM_ROUND_MS, hash the dirty chunks again on the
 * workers and publish what changed as one signed delta (PROTOCOL.md §9). A
 * chunk written again while it was being hashed stays dirty for the next
 * round: every hash published is that of bytes that were in the image.
 */

struct rehash_job {
	struct swarm *sw;
	int fd;
	uint32_t chunk;
	uint32_t len;
	uint64_t off;
	int zero;
	int result; /* 0 hashed, -1 unreadable */
	uint8_t hash[VCRYPTO_HASH_LEN];
};

/* Worker: read and hash one chunk. Touches only the job and the file. */
static void rehash_run(void *arg)
{
	struct rehash_job *j = arg;
	uint8_t *buf = xmalloc(j->len);

	j->result = read_at(j->fd, buf, j->len, j->off) == (ssize_t)j->len ? 0 : -1;
	if (j->result == 0) {
		vcrypto_hash(j->hash, buf, j->len);
		j->zero = scan_is_zero(buf, j->len);
	}
	free(buf);
}

static void seed_round_end(struct swarm *sw);

static void rehash_done(void *arg)
{
	struct rehash_job *j = arg;
	struct swarm *sw = j->sw;

	if (--sw->live.round_left == 0)
		seed_round_end(sw);
}

/* seed -e: chunk c now differs from its published hash. */
static void seed_dirty(struct swarm *sw, uint32_t c)
{
	if (bit_get(sw->live.dirty, c))
		return;
	bit_set(sw->live.dirty, c);
	sw->live.dirty_list = xgrow(sw->live.dirty_list, &sw->live.dirty_cap, sw->live.ndirty,
	                            sizeof(*sw->live.dirty_list), 1024);
	sw->live.dirty_list[sw->live.ndirty++] = c;
	if (bit_get(sw->live.rehash, c))
		return; /* already counted and unserved */
	if (bit_get(sw->serve.map, c))
		sw->serve.nchunks--;
	bit_clear(sw->serve.map, c);
	sw->st.chunks_dirty++;
}

/* seed -e: chunk c is published again (changed or not): serve it and say so. */
static void seed_clean(struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *e = &sw->o.manifest->entries[c];

	sw->st.chunks_dirty--;
	if (!(e->flags & MANIFEST_F_ZERO))
		serve_add(sw, c, e->gen, 1);
}

/* --write-through: chunk c is published and a destination holds it at that generation. */
static int seed_carried(const struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *e = &sw->o.manifest->entries[c];

	if (bit_get(sw->live.dirty, c) || bit_get(sw->live.rehash, c))
		return 0;
	/* A zero chunk travels inside the signed delta itself. */
	return (e->flags & MANIFEST_F_ZERO) || sw->live.carried[c] == e->gen + 1;
}

/* --write-through: acknowledge the writes whose chunks are all carried now. */
static void wt_check(struct swarm *sw)
{
	struct flush_waiter **pp = &sw->live.wt_waiters;

	while (*pp != NULL) {
		struct flush_waiter *w = *pp;
		uint32_t c = w->first;

		while (c <= w->last && seed_carried(sw, c))
			c++;
		if (c <= w->last) {
			w->first = c; /* what is carried stays carried until written again */
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->fn(w->arg, 0);
		free(w);
	}
}

/* A destination announced chunk c at generation gen (it tells the source too). */
static void seed_have(struct swarm *sw, const struct wire_msg *m)
{
	uint32_t c = m->u.have.chunk;

	if (sw->live.carried == NULL || c >= chunk_count(sw) ||
	    m->u.have.gen != sw->o.manifest->entries[c].gen)
		return;
	sw->live.carried[c] = m->u.have.gen + 1;
	if (sw->live.wt_waiters != NULL)
		wt_check(sw);
}

/* Send a DELTA to every peer that knows the volume, except `except`. */
static void delta_broadcast(struct swarm *sw, const struct speer *except)
{
	struct wire_msg m = {.type = WIRE_DELTA};

	m.u.blob.data = sw->gens.last_delta;
	m.u.blob.len = (uint32_t)sw->gens.last_delta_len;
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		if (sp != except && sp->p->state == PEER_READY && !sp->p->is_source &&
		    (sp->map_sent || sp->root_seen))
			peer_send(sp->p, &m);
}

/* Keep blob (ours now) as the newest delta, and the current root's encoding. */
static void delta_keep(struct swarm *sw, uint8_t *blob, size_t len)
{
	free(sw->gens.last_delta);
	sw->gens.last_delta = blob;
	sw->gens.last_delta_len = len;
	free(sw->serve.root_blob);
	if (manifest_root_encode(root_of(sw), &sw->serve.root_blob, &sw->serve.root_blob_len) != 0)
		fatal("cannot encode the manifest root");
}

static void freeze_waiters_call(struct swarm *sw, int result)
{
	while (sw->live.freeze_waiters != NULL) {
		struct flush_waiter *w = sw->live.freeze_waiters;

		sw->live.freeze_waiters = w->next;
		w->fn(w->arg, result);
		free(w);
	}
}

/* Sign and send one delta of n changes (ascending); 0 or -1. */
static int seed_delta(struct swarm *sw, const struct manifest_change *ch, uint32_t n,
                      uint16_t flags)
{
	struct manifest *m = sw->o.manifest;
	uint8_t *blob;
	size_t len;

	if (manifest_delta_make(m, ch, n, flags, sw->o.identity->sk, &blob, &len) != 0) {
		log_error("cannot make the delta of generation %llu",
		          (unsigned long long)m->root.generation + 1);
		return -1;
	}
	delta_keep(sw, blob, len);
	sw->st.deltas++;
	sw->st.chunks_changed += n;
	/* Receipts name a generation: those of older ones count no more. */
	sw->receipts.nsigners = 0;
	sw->st.receipts = 0;
	log_debug("generation %llu: %u chunks changed%s", (unsigned long long)m->root.generation, n,
	          (flags & MANIFEST_ROOT_F_FINAL) ? " (final)" : "");
	delta_broadcast(sw, NULL);
	/* Peers hear of the changed chunks after the delta that names them. */
	for (uint32_t i = 0; i < n; i++)
		seed_clean(sw, ch[i].chunk);
	return 0;
}

/*
 * Publish n changes (any number, ascending) as deltas of at most
 * MANIFEST_DELTA_MAX_CHANGES each. Frozen with nothing left dirty, the last
 * one is final (one without changes if need be) and the freeze is done.
 */
static void seed_publish(struct swarm *sw, const struct manifest_change *ch, uint32_t n)
{
	int final_due = sw->live.frozen && sw->live.ndirty == 0 && sw->live.round_left == 0;
	uint32_t done = 0;

	for (;;) {
		uint32_t k =
		    n - done < MANIFEST_DELTA_MAX_CHANGES ? n - done : MANIFEST_DELTA_MAX_CHANGES;
		int last = done + k == n;
		uint16_t flags = last && final_due ? MANIFEST_ROOT_F_FINAL : 0;

		if (k == 0 && (!flags || (root_of(sw)->flags & MANIFEST_ROOT_F_FINAL)))
			break; /* nothing to say */
		if (seed_delta(sw, ch + done, k, flags) != 0) {
			freeze_waiters_call(sw, -1);
			while (sw->live.wt_waiters != NULL) {
				struct flush_waiter *w = sw->live.wt_waiters;

				sw->live.wt_waiters = w->next;
				w->fn(w->arg, -1);
				free(w);
			}
			finish_run(sw, -1);
			return;
		}
		done += k;
		if (last)
			break;
	}
	if (sw->live.wt_waiters != NULL)
		wt_check(sw); /* zero chunks are carried by the delta */
	if (final_due) {
		log_info("frozen: generation %llu is final",
		         (unsigned long long)root_of(sw)->generation);
		freeze_waiters_call(sw, 0);
	}
}

static int change_cmp(const void *a, const void *b)
{
	const struct manifest_change *x = a, *y = b;

	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

static void seed_round_schedule(struct swarm *sw);

/* Hash the dirty chunks again, on the workers. */
static void seed_round_start(struct swarm *sw)
{
	const struct manifest_root *r = root_of(sw);
	uint32_t n = sw->live.ndirty;

	if (sw->live.round_left > 0 || sw->finished)
		return;
	if (n == 0) {
		if (sw->live.frozen)
			seed_publish(sw, NULL, 0);
		return;
	}
	sw->live.round = xrealloc(sw->live.round, n * sizeof(*sw->live.round));
	sw->live.nround = n;
	sw->live.round_left = n;
	sw->live.ndirty = 0;
	sw->live.last_round_ns = now_ns();
	for (uint32_t i = 0; i < n; i++) {
		struct rehash_job *j = xcalloc(1, sizeof(*j));
		uint32_t c = sw->live.dirty_list[i];

		bit_clear(sw->live.dirty, c);
		bit_set(sw->live.rehash, c);
		j->sw = sw;
		j->fd = sw->o.image_fd;
		j->chunk = c;
		j->len = manifest_chunk_len(r, c);
		j->off = (uint64_t)c * r->chunk_size;
		sw->live.round[i] = j;
	}
	/* Pushed only now: a job may finish before the loop above is done. */
	for (uint32_t i = 0; i < n; i++)
		workq_push(sw->live.hashq, rehash_run, rehash_done, sw->live.round[i]);
}

/* A round is hashed: publish what changed; what was written meanwhile waits. */
static void seed_round_end(struct swarm *sw)
{
	const struct manifest_entry *entries = sw->o.manifest->entries;
	struct manifest_change *ch = xmalloc(sw->live.nround * sizeof(*ch) + 1);
	uint32_t n = 0;

	for (uint32_t i = 0; i < sw->live.nround; i++) {
		struct rehash_job *j = sw->live.round[i];
		uint32_t c = j->chunk;
		const struct manifest_entry *e = &entries[c];
		uint32_t zero = j->zero ? MANIFEST_F_ZERO : 0;

		bit_clear(sw->live.rehash, c);
		if (bit_get(sw->live.dirty, c)) {
			/* Written while it was hashed: its next round will tell. */
		} else if (j->result != 0) {
			log_error("cannot read chunk %u of the image to hash it; trying again", c);
			bit_set(sw->live.rehash, c); /* keeps it counted and unserved */
			seed_dirty(sw, c);
			bit_clear(sw->live.rehash, c);
		} else if ((e->flags & MANIFEST_F_ZERO) == zero &&
		           memcmp(e->hash, j->hash, VCRYPTO_HASH_LEN) == 0) {
			seed_clean(sw, c); /* written back as it was */
		} else {
			memset(&ch[n], 0, sizeof(ch[n]));
			ch[n].chunk = c;
			ch[n].entry.flags = zero;
			memcpy(ch[n].entry.hash, j->hash, VCRYPTO_HASH_LEN);
			n++;
		}
		free(j);
	}
	sw->live.nround = 0;
	if (!sw->finished) {
		qsort(ch, n, sizeof(*ch), change_cmp);
		seed_publish(sw, ch, n);
		seed_round_schedule(sw);
	}
	free(ch);
}

static void seed_round_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	seed_round_start(arg);
}

/* Start the next round when due: SWARM_ROUND_MS after the last, at once when frozen. */
static void seed_round_schedule(struct swarm *sw)
{
	uint64_t now = now_ns(),
	         due = sw->live.last_round_ns + (uint64_t)SWARM_ROUND_MS * NS_PER_MS;
	struct timeval tv = {0, 0};

	if (sw->live.round_left > 0 || sw->finished || evtimer_pending(sw->live.round_ev, NULL) ||
	    (sw->live.ndirty == 0 && !sw->live.frozen))
		return;
	/* Write-through: every write waits for its round, so rounds follow at once. */
	if (!sw->live.frozen && !sw->o.write_through && now < due)
		tv.tv_usec = (suseconds_t)((due - now) / NS_PER_US);
	evtimer_add(sw->live.round_ev, &tv);
}

/*
 * --max-dirty-rate: a token bucket of the VM's write bytes (100 ms worth of
 * burst). Returns 1 if writes must wait; then a timer wakes them.
 */
static int seed_throttled(struct swarm *sw)
{
	double rate = (double)sw->o.max_dirty_rate, burst = rate / 10, wait_s;
	uint64_t now;
	struct timeval tv;

	if (sw->o.max_dirty_rate == 0)
		return 0;
	now = now_ns();
	if (burst < 256 * 1024)
		burst = 256 * 1024;
	sw->live.write_tokens += rate * (double)(now - sw->live.tokens_ns) / NS_PER_S;
	if (sw->live.write_tokens > burst)
		sw->live.write_tokens = burst;
	sw->live.tokens_ns = now;
	if (sw->live.write_tokens >= 0)
		return 0;
	if (!evtimer_pending(sw->live.throttle_ev, NULL)) {
		wait_s = -sw->live.write_tokens / rate;
		tv.tv_sec = (time_t)wait_s;
		tv.tv_usec = (suseconds_t)((wait_s - (double)tv.tv_sec) * US_PER_S) + 1;
		evtimer_add(sw->live.throttle_ev, &tv);
	}
	return 1;
}

static void seed_throttle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct swarm *sw = arg;

	(void)fd;
	(void)what;
	if (sw->exp.chunk_cb != NULL)
		sw->exp.chunk_cb(sw->exp.chunk_cb_arg, SWARM_ALL_CHUNKS);
}

void swarm_freeze(struct swarm *sw, void (*fn)(void *arg, int result), void *arg)
{
	struct flush_waiter *w;

	if (!is_seed(sw) || sw->finished) {
		fn(arg, -1);
		return;
	}
	if ((root_of(sw)->flags & MANIFEST_ROOT_F_FINAL) && sw->live.ndirty == 0 &&
	    sw->live.round_left == 0) {
		fn(arg, 0); /* final already (no VM here, or frozen before) */
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->next = sw->live.freeze_waiters;
	sw->live.freeze_waiters = w;
	if (!sw->live.frozen)
		log_info("freezing: writes are refused from now on; hashing %llu dirty chunks",
		         (unsigned long long)sw->st.chunks_dirty);
	sw->live.frozen = 1;
	seed_round_schedule(sw);
}

int swarm_write_through(const struct swarm *sw)
{
	return is_seed(sw) && sw->o.write_through;
}

void swarm_write_wait(struct swarm *sw, uint64_t off, uint64_t len,
                      void (*fn)(void *arg, int result), void *arg)
{
	const struct manifest_root *r = root_of(sw);
	struct flush_waiter *w;

	if (!swarm_write_through(sw) || len == 0) {
		fn(arg, 0);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->first = (uint32_t)(off / r->chunk_size);
	w->last = (uint32_t)((off + len - 1) / r->chunk_size);
	w->next = sw->live.wt_waiters;
	sw->live.wt_waiters = w;
	wt_check(sw);
}

void swarm_thaw(struct swarm *sw)
{
	if (!is_seed(sw) || (!sw->live.frozen && sw->live.freeze_waiters == NULL))
		return;
	sw->live.frozen = 0;
	freeze_waiters_call(sw, -1);
	log_info("thawed: the VM may write again; the next generation is not final");
	if (root_of(sw)->flags & MANIFEST_ROOT_F_FINAL) {
		if (seed_delta(sw, NULL, 0, 0) != 0)
			finish_run(sw, -1);
	}
	seed_round_schedule(sw);
}

/* ---- A plain seed's image must not change (PROTOCOL.md §7.4) ---------- */

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
static void seed_recheck(struct swarm *sw, const char *who, uint32_t c, uint64_t gen)
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
	j->fd = sw->o.image_fd;
	j->chunk = c;
	j->len = manifest_chunk_len(&man->root, c);
	j->off = (uint64_t)c * man->root.chunk_size;
	workq_push(sw->live.hashq, rehash_run, recheck_done, j);
}

static void on_error(struct peer *p, const struct wire_msg *m)
{
	struct speer *sp = p->owner;
	struct swarm *sw = sp->sw;

	if (is_seed(sw) && sw->o.image_fixed && !sw->finished &&
	    m->u.error.code == WIRE_E_BAD_DATA && m->u.error.has_chunk)
		seed_recheck(sw, p->name, m->u.error.chunk, m->u.error.gen);
}

/* The peers' shared context (sw->o is set): callbacks, keys, DNS, the upload limit. */
static void conn_init(struct swarm *sw)
{
	const struct swarm_opts *o = &sw->o;

	sw->conn.ops.on_ready = on_ready;
	sw->conn.ops.on_msg = on_msg;
	sw->conn.ops.on_drain = on_drain;
	sw->conn.ops.on_close = on_close;
	sw->conn.ops.on_error = on_error;
	sw->conn.ctx.base = o->base;
	sw->conn.ctx.ops = &sw->conn.ops;
	memcpy(sw->conn.ctx.volume_id, o->volume_id, sizeof(sw->conn.ctx.volume_id));
	memcpy(sw->conn.ctx.source_key, o->source_key, sizeof(sw->conn.ctx.source_key));
	memcpy(sw->conn.ctx.join_secret, o->join_secret, sizeof(sw->conn.ctx.join_secret));
	sw->conn.ctx.identity = o->identity;
	sw->conn.ctx.is_source = o->role == SWARM_SEED;
	sw->conn.ctx.timeout_s = o->timeout_s > 0 ? o->timeout_s : PEER_TIMEOUT_DEFAULT;
	sw->conn.ctx.dns = evdns_base_new(o->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (o->upload_rate > 0) {
		/* Rates are per tick; 50 ms ticks keep the flow smooth. */
		struct timeval t = {0, 50000};
		size_t per_tick = (size_t)(o->upload_rate / 20 ? o->upload_rate / 20 : 1);
		struct ev_token_bucket_cfg *cfg = ev_token_bucket_cfg_new(
		    EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, per_tick, per_tick, &t);

		sw->conn.ctx.upload_limit = bufferevent_rate_limit_group_new(o->base, cfg);
		/* The group keeps its own copy of the configuration. */
		ev_token_bucket_cfg_free(cfg);
	}
}

struct swarm *swarm_new(const struct swarm_opts *o)
{
	struct swarm *sw = xcalloc(1, sizeof(*sw));
	struct timeval tick = {0, 250000};

	sw->o = *o;
	sw->check = getenv("P2PVBD_CHECK") != NULL;
	conn_init(sw);
	sw->serve.page_buf = xmalloc(MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN);
	if (o->role == SWARM_SEED) {
		struct manifest *m = o->manifest;

		if (manifest_root_encode(&m->root, &sw->serve.root_blob,
		                         &sw->serve.root_blob_len) != 0)
			fatal("cannot encode the manifest root");
		sw->serve.map = bitmap_new(m->root.chunk_count);
		sw->serve.sent_count = xcalloc(m->root.chunk_count, 1);
		sw->live.dirty = bitmap_new(m->root.chunk_count);
		sw->live.rehash = bitmap_new(m->root.chunk_count);
		sw->pipe.syncq = workq_new(o->base, 1, "sync");
		sw->live.hashq = workq_new(o->base, 0, "rehash");
		if (sw->pipe.syncq == NULL || sw->live.hashq == NULL)
			fatal("cannot start worker threads");
		sw->live.round_ev = evtimer_new(o->base, seed_round_cb, sw);
		sw->live.throttle_ev = evtimer_new(o->base, seed_throttle_cb, sw);
		sw->live.tokens_ns = now_ns();
		if (o->write_through)
			sw->live.carried = xcalloc(m->root.chunk_count, sizeof(uint64_t));
		for (uint32_t c = 0; c < m->root.chunk_count; c++)
			if (!(m->entries[c].flags & MANIFEST_F_ZERO))
				bit_set(sw->serve.map, c);
	} else {
		sw->pipe.verifyq = workq_new(o->base, 0, "verify");
		sw->pipe.syncq = workq_new(o->base, 1, "sync");
		if (sw->pipe.verifyq == NULL || sw->pipe.syncq == NULL)
			fatal("cannot start worker threads");
		for (int i = 0; i < o->npeers; i++)
			addr_add(sw, &o->peers[i], 0);
	}
	/* A BitTorrent-style peer id: client tag, then random bytes. */
	memcpy(sw->conn.peer_id, "-PV0100-", 8);
	vcrypto_random(sw->conn.peer_id + 8, sizeof(sw->conn.peer_id) - 8);
	vcrypto_random(&sw->want.rng, sizeof(sw->want.rng));
	sw->want.rng |= 1; /* xorshift must not start at 0 */
	sw->pipe.basis_fd = -1;
	sw->pages.fd = -1;
	if (o->role == SWARM_FETCH && o->basis_path != NULL) {
		sw->pipe.basis_fd = open(o->basis_path, O_RDONLY | O_CLOEXEC);
		if (sw->pipe.basis_fd < 0)
			log_warn("cannot open the basis %s: %s; fetching everything", o->basis_path,
			         strerror(errno));
	}
	sw->last_progress_ns = now_ns();
	sw->tick = event_new(o->base, -1, EV_PERSIST, tick_cb, sw);
	sw->exp.wake_ev = event_new(o->base, -1, 0, chunk_wake_cb, sw);
	event_add(sw->tick, &tick);
	return sw;
}

int swarm_listen(struct swarm *sw, const char *host, uint16_t port, uint16_t *bound)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	socklen_t sslen;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		sslen = sizeof(*s4);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		sslen = sizeof(*s6);
	} else {
		log_error("cannot listen on %s: not a numeric address", host);
		return -1;
	}
	sw->conn.listener = evconnlistener_new_bind(sw->o.base, on_accept, sw,
	                                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	                                            (struct sockaddr *)&ss, (int)sslen);
	if (sw->conn.listener == NULL) {
		log_error("cannot listen on %s port %u: %s", host, port, strerror(errno));
		return -1;
	}
	sslen = sizeof(ss);
	getsockname(evconnlistener_get_fd(sw->conn.listener), (struct sockaddr *)&ss, &sslen);
	*bound = ntohs(ss.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port);
	sw->conn.listen_port = *bound;
	return 0;
}

void swarm_start(struct swarm *sw)
{
	if (sw->o.ntrackers > 0) {
		sw->conn.trackers = xcalloc((size_t)sw->o.ntrackers, sizeof(*sw->conn.trackers));
		for (int i = 0; i < sw->o.ntrackers; i++) {
			struct tclient *t = tclient_new(
			    sw->o.base, sw->conn.ctx.dns, sw->o.trackers[i], sw->o.volume_id,
			    sw->conn.peer_id, sw->conn.listen_port, &announce_ops, sw);

			if (t == NULL)
				continue; /* logged; the other trackers and peers may do */
			sw->conn.trackers[sw->conn.ntrackers++] = t;
			tclient_start(t);
			if (sw->o.role == SWARM_SEED && sw->o.exit_after_receipts > 0)
				tclient_poll_receipts(t, 1);
		}
	}
	if (sw->o.role != SWARM_FETCH)
		return;
	for (int i = 0; i < sw->conn.naddrs && i < SWARM_CONNECT_MAX; i++)
		conn_dial(sw, i);
	if (sw->conn.naddrs == 0 && sw->conn.ntrackers == 0) {
		log_error("the URI names no peer and no usable tracker to fetch from");
		finish_run(sw, -1);
	}
}

int swarm_result(const struct swarm *sw)
{
	return sw->result;
}

void swarm_progress(const struct swarm *sw, uint64_t *done, uint64_t *total)
{
	if (sw->o.role == SWARM_SEED || !sw->have_root) {
		*done = 0;
		*total = 0;
		return;
	}
	*total = sw->root.image_size;
	/*
	 * Chunks held at start count before their pages are loaded (present_bytes);
	 * once every page was, only what is available counts (the store still
	 * holds the chunks a delta changed, at their old generation).
	 */
	if (sw->complete)
		*done = sw->root.image_size;
	else if (sw->pages.nseen == sw->root.page_count ||
	         sw->chunks.avail_bytes > sw->store.present_bytes)
		*done = sw->chunks.avail_bytes;
	else
		*done = sw->store.present_bytes;
	if (*done > *total)
		*done = *total;
}

void swarm_travel(const struct swarm *sw, uint64_t *done, uint64_t *total)
{
	swarm_progress(sw, done, total);
	if (*total == 0)
		return;
	*total -= sw->chunks.zeroed_bytes < *total ? sw->chunks.zeroed_bytes : *total;
	*done -= sw->chunks.zeroed_bytes < *done ? sw->chunks.zeroed_bytes : *done;
	if (*done > *total)
		*done = *total;
}

/* ---- Monitoring: fault latency, the peer list, status extras ------------ */

/*
 * A chunk the VM's read waits for, and since when. The table is open
 * addressing with linear probing, at most half full; it holds exactly the
 * chunks with their urgent bit set, which the export's bounded request queue
 * (and the chunk count) bound.
 */
struct fault_wait {
	uint32_t chunk;
	uint64_t since_ns; /* 0: the slot is free (the monotonic clock is never 0) */
};

const uint32_t swarm_fault_le_us[SWARM_FAULT_BUCKETS] = {
    1000,   2500,   5000,    10000,   25000,   50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static uint32_t fault_home(uint32_t chunk, uint32_t cap)
{
	return (chunk * 2654435761u) & (cap - 1); /* Knuth's multiplicative hash; cap is 2^k */
}

static void fault_put(struct fault_wait *tab, uint32_t cap, uint32_t chunk, uint64_t since)
{
	uint32_t i = fault_home(chunk, cap);

	while (tab[i].since_ns != 0)
		i = (i + 1) & (cap - 1);
	tab[i].chunk = chunk;
	tab[i].since_ns = since;
}

/* swarm_fault made chunk c urgent: its wait starts now. */
static void fault_started(struct swarm *sw, uint32_t c)
{
	if (2 * (sw->faults.ntable + 1) > sw->faults.table_cap) {
		uint32_t cap = sw->faults.table_cap ? 2 * sw->faults.table_cap : 64;
		struct fault_wait *tab = xcalloc(cap, sizeof(*tab));

		for (uint32_t i = 0; i < sw->faults.table_cap; i++)
			if (sw->faults.table[i].since_ns != 0)
				fault_put(tab, cap, sw->faults.table[i].chunk,
				          sw->faults.table[i].since_ns);
		free(sw->faults.table);
		sw->faults.table = tab;
		sw->faults.table_cap = cap;
	}
	fault_put(sw->faults.table, sw->faults.table_cap, c, now_ns());
	sw->faults.ntable++;
}

/* Urgent chunk c is readable now (avail_set): its wait ends; into the histogram. */
static void fault_settled(struct swarm *sw, uint32_t c)
{
	uint32_t mask = sw->faults.table_cap - 1, i, j;
	uint64_t waited_ns;
	int b = 0;

	if (sw->faults.ntable == 0)
		return;
	for (i = fault_home(c, sw->faults.table_cap); sw->faults.table[i].chunk != c;
	     i = (i + 1) & mask)
		if (sw->faults.table[i].since_ns == 0)
			return; /* not timed (cannot happen: every urgent bit has an entry) */
	if (sw->faults.table[i].since_ns == 0)
		return;
	waited_ns = now_ns() - sw->faults.table[i].since_ns;
	while (b < SWARM_FAULT_BUCKETS && waited_ns > (uint64_t)swarm_fault_le_us[b] * NS_PER_US)
		b++;
	sw->faults.hist.bucket[b]++;
	sw->faults.hist.count++;
	sw->faults.hist.sum_s += (double)waited_ns / NS_PER_S;
	/* Delete by shifting back the entries of the probe run that follow. */
	for (j = (i + 1) & mask; sw->faults.table[j].since_ns != 0; j = (j + 1) & mask) {
		uint32_t home = fault_home(sw->faults.table[j].chunk, sw->faults.table_cap);

		/* j's entry may fill the hole at i if its home is not in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			sw->faults.table[i] = sw->faults.table[j];
			i = j;
		}
	}
	sw->faults.table[i].since_ns = 0;
	sw->faults.ntable--;
}

/* Each peer's piece rates in and out, smoothed like the status rates (rates_update). */
static void peer_rates_update(struct swarm *sw, double dt)
{
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		double in = (double)(sp->p->bytes_in - sp->mon_in) / dt;
		double out = (double)(sp->p->bytes_out - sp->mon_out) / dt;

		sp->mon_in_rate = 0.9 * sp->mon_in_rate + 0.1 * in;
		sp->mon_out_rate = 0.9 * sp->mon_out_rate + 0.1 * out;
		sp->mon_in = sp->p->bytes_in;
		sp->mon_out = sp->p->bytes_out;
	}
}

int swarm_peer_list(const struct swarm *sw, struct swarm_peer_info *out, int max)
{
	int n = 0;

	for (const struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		struct swarm_peer_info *pi;

		if (sp->p->state != PEER_READY)
			continue;
		if (n++ >= max)
			continue;
		pi = &out[n - 1];
		memset(pi, 0, sizeof(*pi));
		snprintf(pi->address, sizeof(pi->address), "%s", sp->p->name);
		pi->role = sp->p->is_source ? "source" : "peer";
		pi->fetch_rate = sp->mon_in_rate;
		pi->serve_rate = sp->mon_out_rate;
		pi->chunks = sp->pk.have != NULL ? (int64_t)sp->nhave : -1;
		pi->bytes_fetched = sp->p->bytes_in;
		pi->bytes_served = sp->p->bytes_out;
	}
	return n;
}

/* The monitoring fields of st (swarm_status fills the rest first). */
static void status_monitoring(const struct swarm *sw, struct swarm_status *st)
{
	memcpy(st->volume_id, sw->o.volume_id, sizeof(st->volume_id));
	st->output = is_seed(sw) ? sw->o.image_path : sw->o.out_path;
	st->receipts = sw->st.receipts;
	if (!is_seed(sw)) {
		uint64_t done, total;

		swarm_travel(sw, &done, &total); /* what the progress display counts too */
		st->bytes_left = total - done;
	}
	st->faults_waiting = sw->faults.ntable;
	st->fault_latency = sw->faults.hist;
}

void swarm_status(const struct swarm *sw, struct swarm_status *st)
{
	uint64_t total;

	memset(st, 0, sizeof(*st));
	st->seed = is_seed(sw);
	st->have_root = st->seed || sw->have_root;
	st->complete = st->seed || sw->complete;
	st->final = st->have_root && root_final(sw);
	if (st->have_root) {
		const struct manifest_root *r = root_of(sw);

		st->generation = r->generation;
		st->image_size = r->image_size;
		st->chunk_size = r->chunk_size;
		st->chunks_total = r->chunk_count;
	}
	swarm_progress(sw, &st->bytes_done, &total);
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		st->peers += sp->p->state == PEER_READY;
	st->fetch_rate = sw->rates.fetch;
	st->serve_rate = sw->rates.serve;
	st->write_rate = sw->rates.write;
	st->dirty_bytes = sw->st.chunks_dirty * (st->seed ? root_of(sw)->chunk_size : 0);
	status_monitoring(sw, st);
}

const struct swarm_stats *swarm_stats(const struct swarm *sw)
{
	return &sw->st;
}

void swarm_shutdown(struct swarm *sw)
{
	/* seed -e: the VM's writes at the source are durable before we exit. */
	if (sw->o.role == SWARM_SEED && sw->st.bytes_written > 0 && fdatasync(sw->o.image_fd) != 0)
		log_error("fdatasync of the image at shutdown: %s", strerror(errno));
	/* Everything flushed: chunk marks and the local VM's writes. */
	if (sw->store_open && (store_commit(&sw->store) < 0 || store_sync_data(&sw->store) < 0))
		log_error("could not make everything durable at shutdown");
	finish_run(sw, sw->complete || sw->o.role == SWARM_SEED ? 0 : -1);
}

/* ---- Export support ---------------------------------------------------- */

void swarm_set_chunk_cb(struct swarm *sw, void (*fn)(void *arg, uint32_t chunk), void *arg)
{
	sw->exp.chunk_cb = fn;
	sw->exp.chunk_cb_arg = arg;
}

void swarm_set_ready_cb(struct swarm *sw, void (*fn)(void *arg), void *arg)
{
	sw->exp.ready_cb = fn;
	sw->exp.ready_cb_arg = arg;
}

/*
 * The export API serves the source's own image too (seed -e: the VM runs on
 * the source and writes through us). There every chunk is readable and
 * writable; a write makes its chunks dirty: never served to peers again at
 * the generation they were hashed at (§7.3).
 */

uint64_t swarm_volume_size(const struct swarm *sw)
{
	return is_seed(sw) || sw->have_root ? root_of(sw)->image_size : 0;
}

uint32_t swarm_chunk_size(const struct swarm *sw)
{
	return is_seed(sw) || sw->have_root ? root_of(sw)->chunk_size : 0;
}

int swarm_final(const struct swarm *sw)
{
	return is_seed(sw) || (sw->have_root && root_final(sw));
}

int swarm_complete(const struct swarm *sw)
{
	return sw->complete;
}

int swarm_readable(const struct swarm *sw, uint32_t chunk)
{
	if (is_seed(sw))
		return chunk < root_of(sw)->chunk_count;
	return sw->have_root && chunk < sw->root.chunk_count && bit_get(sw->chunks.avail, chunk);
}

int swarm_is_zero(const struct swarm *sw, uint32_t chunk)
{
	if (is_seed(sw))
		return chunk < root_of(sw)->chunk_count && !bit_get(sw->live.dirty, chunk) &&
		       !bit_get(sw->live.rehash, chunk) &&
		       (sw->o.manifest->entries[chunk].flags & MANIFEST_F_ZERO);
	return sw->have_root && chunk < sw->root.chunk_count && !bit_get(sw->chunks.local, chunk) &&
	       bit_get(sw->chunks.avail, chunk) && store_state_of(&sw->store, chunk) == STORE_ZERO;
}

int swarm_writable(struct swarm *sw, uint32_t chunk, int whole)
{
	if (is_seed(sw))
		return chunk < root_of(sw)->chunk_count && !seed_throttled(sw);
	if (!sw->have_root || chunk >= sw->root.chunk_count)
		return 0;
	if (bit_get(sw->chunks.avail, chunk))
		return 1;
	/* A whole-chunk write needs no fetch, but must not race the worker that
	 * may be writing the fetched copy. */
	return whole && !bit_get(sw->pipe.verifying, chunk);
}

void swarm_fault(struct swarm *sw, uint32_t chunk, int readahead)
{
	if (is_seed(sw))
		return; /* the source has everything */
	if (!sw->have_root || chunk >= sw->root.chunk_count || sw->finished ||
	    bit_get(sw->chunks.avail, chunk) || bit_get(sw->faults.urgent, chunk))
		return;
	if (readahead) {
		/* Readahead is a hint: only start it if nothing is in flight for it. */
		struct pick_view v = pick_view_of(sw);
		struct speer *sp;

		if (!pick_readahead(&v, chunk))
			return;
		sp = best_peer_for(sw, chunk);
		if (sp != NULL)
			xfer_start(sw, sp, chunk,
			           sw->o.no_boost ? WIRE_PRIO_BACKGROUND : WIRE_PRIO_READAHEAD);
		return;
	}
	bit_set(sw->faults.urgent, chunk);
	fault_started(sw, chunk);
	sw->faults.list = xgrow(sw->faults.list, &sw->faults.list_cap, sw->faults.nlist,
	                        sizeof(*sw->faults.list), 64);
	sw->faults.list[sw->faults.nlist++] = chunk;
	fetch_urgent(sw, chunk);
}

int swarm_read(struct swarm *sw, uint64_t off, void *buf, size_t len)
{
	if (is_seed(sw))
		return serve_fill(sw, buf, len, off);
	return store_read(&sw->store, off, buf, len);
}

/* seed -e: the VM's write at the source. Its chunks become dirty first. */
static int seed_write(struct swarm *sw, uint64_t off, const void *data, uint64_t len, int zero,
                      int punch)
{
	const struct manifest_root *r = root_of(sw);
	uint32_t first = (uint32_t)(off / r->chunk_size);
	uint32_t last = (uint32_t)((off + len - 1) / r->chunk_size);

	if (sw->live.frozen) {
		/* Never lose a write: refuse it, the VM sees an I/O error. */
		log_warn("refusing the VM's write of %llu bytes at %llu: the source is frozen",
		         (unsigned long long)len, (unsigned long long)off);
		errno = EROFS;
		return -1;
	}
	for (uint32_t c = first; c <= last; c++)
		seed_dirty(sw, c);
	seed_round_schedule(sw);
	sw->st.bytes_written += len;
	sw->live.write_tokens -= (double)len;
	if ((zero ? zero_at(sw->o.image_fd, off, len, punch)
	          : write_at(sw->o.image_fd, data, (size_t)len, off)) != 0) {
		log_error("writing the image at %llu: %s", (unsigned long long)off,
		          strerror(errno));
		return -1;
	}
	return 0;
}

int swarm_local_write(struct swarm *sw, uint64_t off, const void *data, uint64_t len, int zero,
                      int punch)
{
	uint32_t cs, first, last;
	int settled = 0, rc;

	if (len == 0)
		return 0;
	if (is_seed(sw))
		return seed_write(sw, off, data, len, zero, punch);
	cs = sw->root.chunk_size;
	first = (uint32_t)(off / cs);
	last = (uint32_t)((off + len - 1) / cs);
	for (uint32_t c = first; c <= last; c++) {
		if (store_mark_local(&sw->store, c) != 0)
			return -1;
		if (!bit_get(sw->chunks.local, c)) {
			bit_set(sw->chunks.local, c);
			if (bit_get(sw->serve.map, c))
				sw->serve.nchunks--;
			bit_clear(sw->serve.map, c);
			/*
			 * A chunk the VM wrote whole is done as far as fetching goes:
			 * transfers of it are taken back (the VM's data wins) and its
			 * page counts it now. (Not being verified: swarm_writable.)
			 */
			if (!bit_get(sw->chunks.avail, c)) {
				xfer_cancel_chunk(sw, c);
				if (sw->pages.entries != NULL &&
				    sw->pages.status[c / MANIFEST_PAGE_ENTRIES] == PAGE_LOADED) {
					uint32_t page = c / MANIFEST_PAGE_ENTRIES;

					if (--sw->pages.left[page] == 0)
						page_done(sw, page);
					settled = 1;
				}
			}
			avail_set(sw, c);
			bit_clear(sw->faults.urgent, c);
		}
	}
	rc = zero ? store_zero_range(&sw->store, off, len, punch)
	          : store_write_range(&sw->store, off, data, (size_t)len);
	check_pages(sw, "a write of the VM");
	/* The write may have settled the last chunk the volume lacked. */
	if (rc == 0 && settled)
		fetch_schedule(sw);
	return rc;
}

void swarm_keep_running(struct swarm *sw)
{
	sw->exp.keep_running = 1;
}

/* seed -e: FLUSH makes the image durable (on the sync thread). */
struct seed_sync_job {
	struct swarm *sw;
	struct flush_waiter *waiters;
	int result;
};

static void seed_sync_run(void *arg)
{
	struct seed_sync_job *j = arg;

	j->result = fdatasync(j->sw->o.image_fd) == 0 ? 0 : -1;
	if (j->result != 0)
		log_error("fdatasync of the image: %s", strerror(errno));
}

static void seed_sync_done(void *arg)
{
	struct seed_sync_job *j = arg;

	while (j->waiters != NULL) {
		struct flush_waiter *w = j->waiters;

		j->waiters = w->next;
		w->fn(w->arg, j->result);
		free(w);
	}
	free(j);
}

/* seed -e: w waits for the image to be durable. */
static void seed_flush(struct swarm *sw, struct flush_waiter *w)
{
	struct seed_sync_job *j = xcalloc(1, sizeof(*j));

	j->sw = sw;
	j->waiters = w;
	workq_push(sw->pipe.syncq, seed_sync_run, seed_sync_done, j);
}

void swarm_flush(struct swarm *sw, void (*fn)(void *arg, int result), void *arg)
{
	struct flush_waiter *w = xcalloc(1, sizeof(*w));

	w->fn = fn;
	w->arg = arg;
	if (is_seed(sw)) {
		seed_flush(sw, w);
		return;
	}
	w->next = sw->pipe.flush_next;
	sw->pipe.flush_next = w;
	commit_start(sw);
}

void swarm_free(struct swarm *sw)
{
	if (sw == NULL)
		return;
	while (sw->conn.peers != NULL) {
		struct speer *sp = sw->conn.peers;

		if (sp->p->state != PEER_DEAD)
			peer_close(sp->p, "swarm freed");
		else
			speer_unlink_free(sw, sp);
	}
	/* Finish the workers' jobs (their done() callbacks still need the swarm). */
	sw->finished = 1;
	workq_free(sw->pipe.verifyq);
	workq_free(sw->pipe.syncq);
	workq_free(sw->live.hashq);
	freeze_waiters_call(sw, -1);
	/* Flushes that never got a commit fail. */
	while (sw->pipe.flush_next != NULL) {
		struct flush_waiter *w = sw->pipe.flush_next;

		sw->pipe.flush_next = w->next;
		w->fn(w->arg, -1);
		free(w);
	}
	/* Trackers drop us at once instead of handing out our address until we time out. */
	tclient_stop_all(sw->conn.trackers, sw->conn.ntrackers);
	for (int i = 0; i < sw->conn.ntrackers; i++)
		tclient_free(sw->conn.trackers[i]);
	free(sw->conn.trackers);
	/* Let the deferred frees of the peers run. */
	event_base_loop(sw->o.base, EVLOOP_NONBLOCK);
	if (sw->conn.listener)
		evconnlistener_free(sw->conn.listener);
	if (sw->tick)
		event_free(sw->tick);
	if (sw->exp.wake_ev)
		event_free(sw->exp.wake_ev);
	if (sw->live.round_ev)
		event_free(sw->live.round_ev);
	if (sw->live.throttle_ev)
		event_free(sw->live.throttle_ev);
	free(sw->live.round);
	free(sw->live.dirty_list);
	free(sw->live.rehash);
	free(sw->gens.stale);
	free(sw->gens.changed);
	free(sw->gens.last_delta);
	for (int i = 0; i < sw->pipe.nxfers; i++)
		free(sw->pipe.xfers[i].buf);
	if (sw->pages.entries)
		for (uint32_t i = 0; i < sw->root.page_count; i++)
			free(sw->pages.entries[i]);
	free(sw->pages.entries);
	free(sw->pages.status);
	free(sw->pages.left);
	free(sw->pages.seen);
	free(sw->pages.from);
	free(sw->want.list);
	free(sw->chunks.avail);
	free(sw->chunks.zeroed);
	free(sw->chunks.local);
	free(sw->pipe.verifying);
	free(sw->faults.urgent);
	free(sw->pipe.basis_q);
	if (sw->pipe.basis_fd >= 0)
		close(sw->pipe.basis_fd);
	if (sw->pages.fd >= 0)
		close(sw->pages.fd);
	free(sw->pipe.fetching);
	free(sw->chunks.holders);
	free(sw->faults.list);
	free(sw->faults.table);
	free(sw->serve.map);
	free(sw->serve.sent_count);
	free(sw->live.dirty);
	free(sw->serve.root_blob);
	free(sw->serve.page_buf);
	free(sw->conn.addrs);
	free(sw->receipts.signers);
	if (sw->store_open)
		store_close(&sw->store);
	if (sw->have_root)
		manifest_root_free(&sw->root);
	if (sw->conn.ctx.upload_limit)
		bufferevent_rate_limit_group_free(sw->conn.ctx.upload_limit);
	if (sw->conn.ctx.dns)
		evdns_base_free(sw->conn.ctx.dns, 0);
	vcrypto_wipe(sw->conn.ctx.join_secret, sizeof(sw->conn.ctx.join_secret));
	free(sw);
}
