/* SPDX-License-Identifier: ISC */
/*
 * swarm_int.h: the swarm's private header, shared by the files of
 * p2pvbd/swarm/ and by the picker's unit tests. struct swarm is here, in
 * parts each owned by one file; below it, each file's functions that the
 * others call, grouped by file. The public API: swarm.h, swarm_export.h.
 */
#ifndef P2PVBD_SWARM_INT_H
#define P2PVBD_SWARM_INT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "manifest.h"
#include "peer.h"
#include "preauth.h"
#include "store.h"
#include "swarm.h"
#include "tclient.h"
#include "util.h"
#include "wire.h"

/*
 * Authenticated peers and our own connections being made, at once; an
 * accepted connection that authenticates beyond it is closed with E_BUSY.
 * Accepted connections still in their handshake are counted apart
 * (preauth.h: PREAUTH_MAX, PREAUTH_PER_ADDR) and never take these places.
 */
#define SWARM_PEERS_MAX 64
/* How often a summary of the handshakes refused, dropped or too slow is logged, seconds. */
#define SWARM_PREAUTH_REPORT_S 60
/* Most chunks being assembled at once (all peers together). */
#define SWARM_XFER_MAX 256
/*
 * Fetched chunks are requested in blocks of this size. Small blocks keep each
 * frame short, so that an urgent piece never waits long behind a background
 * piece already being sent (64 KiB is 5 ms at 100 Mbit/s), while the
 * per-frame overhead (28 bytes) stays negligible.
 */
#define SWARM_BLOCK (64u * 1024u)
/* Most complete chunks waiting for (or in) verification; bounds their memory. */
#define SWARM_VERIFY_MAX 64
/* How long a peer that answered BUSY (no upload slot for us) is left alone. */
#define SWARM_BUSY_BACKOFF_MS 2000
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
	int halfopen; /* accepted, not authenticated yet: in conn.pre, not in conn.npeers */
	int evicted;  /* closed by us to make room for a newer handshake */
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

/* live.c: one chunk read and hashed again on a worker (a round's, or serve.c's recheck). */
struct rehash_job {
	struct swarm *sw;
	struct imgsrc *src; /* the seed's image (thread-safe reads) */
	uint32_t chunk;
	uint32_t len;
	uint64_t off;
	int zero;
	int result; /* 0 hashed, -1 unreadable */
	uint8_t hash[VCRYPTO_HASH_LEN];
};

/* conn.c: the connections, the address book and the trackers. */
struct conns {
	struct peer_ctx ctx;
	struct peer_ops ops;
	struct evconnlistener *listener;
	struct speer *peers;
	int npeers;         /* in the list, authenticated or dialled by us (not halfopen) */
	uint64_t next_id;   /* the last speer id given out */
	struct addr *addrs; /* the address book: from the URI and from trackers */
	int naddrs;
	size_t addrs_cap;
	struct tclient **trackers;
	int ntrackers;
	uint16_t listen_port;                 /* 0 if not listening */
	uint8_t peer_id[TCLIENT_PEER_ID_LEN]; /* ours at the trackers */

	/* Accepted connections in their handshake (preauth.h), and what became of some. */
	struct preauth pre;
	uint64_t hs_refused;     /* refused at once: PREAUTH_PER_ADDR from that address */
	uint64_t hs_dropped;     /* closed to make room: PREAUTH_MAX in progress */
	uint64_t hs_reported[3]; /* refused, dropped, late at the last summary (conn_report) */
	uint64_t hs_report_ns;   /* when the last summary was considered */
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

/*
 * A tracker hands the source the same receipts every poll: each refused one
 * is logged once (remembered by its hash), up to this many; past that, refusals
 * are logged at debug level, so that junk posted to a tracker cannot flood the log.
 */
#define SWARM_RECEIPTS_REFUSED_MAX 64

/* Receipts: our own at a destination (fetch.c), those taken at the source (serve.c). */
struct receipts {
	uint8_t blob[MANIFEST_RECEIPT_LEN]; /* ours, for the current generation */
	int made;                           /* blob holds it */
	int sent;                           /* to the source */
	int warned;                         /* nobody acknowledged it in time: said so */
	uint64_t deadline_ns;               /* acknowledged by then, or warned */
	uint8_t (*signers)[VCRYPTO_PK_LEN]; /* the source: distinct receipt signers */
	uint64_t nsigners;
	uint8_t key[VCRYPTO_KEY_LEN]; /* MAC key of the volume's receipts (join secret); wiped */
	/* The source: hashes of the receipts a tracker relayed that were refused (logged once). */
	uint8_t (*refused)[VCRYPTO_HASH_LEN];
	unsigned nrefused;
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
	uint8_t *stale;   /* chunk bitmap: changed by a delta while being verified */
	uint8_t *changed; /* chunk bitmap: changed by a delta, not yet asked for again */
	/* Per chunk, how often and how recently the source's VM changed it (the
	 * writable working set, picker.c): changes (saturating) and the tick of
	 * the last one (SWARM_HEAT_TICK_MS since the swarm started; 0: never). */
	uint8_t *changes;
	uint32_t *changed_tick;
	uint64_t heat_t0_ns;
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
	uint64_t *carried;         /* per chunk, 1 + the generation a destination holds (0: none) */
	/* Auto-converge: bytes of published non-zero chunks that no destination
	 * holds at their generation (the copy's lag), its smallest value in the
	 * current window, and the cap on the VM's writes it set (0: none). */
	uint64_t lag_bytes, lag_start;
	uint8_t *lagging;     /* chunk bitmap: counted in lag_bytes */
	uint64_t converge_ns; /* when the current window (SWARM_CONVERGE_WINDOW_MS) began */
	double auto_rate;
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
	/*
	 * The writable working set: per chunk, how often (changes) and when
	 * (changed_tick) the source's VM changed it, and the tick now. With
	 * defer_hot, a hot chunk (pick_is_hot) is not asked for while a cold one
	 * is wanted or on its way. NULL changes: nothing is hot.
	 */
	const uint8_t *changes;
	const uint32_t *changed_tick;
	uint32_t now_tick;
	int defer_hot;
};

/* Ticks of the heat clock (gens.changed_tick). */
#define SWARM_HEAT_TICK_MS 100
/*
 * A chunk changed n times stays hot for n x SWARM_HOT_MS (n at most
 * SWARM_HOT_CHANGES_MAX) after its last change: one the VM writes again and
 * again is not worth sending until it stops (or until the freeze).
 */
#define SWARM_HOT_MS          1000
#define SWARM_HOT_CHANGES_MAX 8
int pick_is_hot(const struct pick_view *v, uint32_t c);

/* What to do about a fault (pick_fault). */
enum pick_act {
	PICK_NONE,  /* nothing now: settled, asked at this priority already, or no room */
	PICK_PAGE,  /* ask for its page of the chunk table first */
	PICK_RAISE, /* ask the transfer of it again at the fault's priority */
	PICK_START, /* start a transfer of it, from pick_peer_for's choice */
};

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

/* This process is the volume's source. */
static inline int is_seed(const struct swarm *sw)
{
	return sw->o.role == SWARM_SEED;
}

/* Chunks of the volume (a destination: once the root is known). */
static inline uint32_t chunk_count(const struct swarm *sw)
{
	return sw->o.role == SWARM_SEED ? sw->o.manifest->root.chunk_count : sw->root.chunk_count;
}

/* The signed root in use: the source's own, or the one a destination holds. */
static inline const struct manifest_root *root_of(const struct swarm *sw)
{
	return sw->o.role == SWARM_SEED ? &sw->o.manifest->root : &sw->root;
}

/* The generation in use is final (the source froze). */
static inline int root_final(const struct swarm *sw)
{
	return (root_of(sw)->flags & MANIFEST_ROOT_F_FINAL) != 0;
}

/* Chunk c's entry at a destination while its page is loaded, else NULL. */
static inline const struct manifest_entry *entry_of(const struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *pe = sw->pages.entries[c / MANIFEST_PAGE_ENTRIES];

	return pe ? &pe[c % MANIFEST_PAGE_ENTRIES] : NULL;
}

/* swarm.c */
void finish_run(struct swarm *sw, int result);
void fault_started(struct swarm *sw, uint32_t c);
void fault_settled(struct swarm *sw, uint32_t c);

/* conn.c */
void speer_unlink_free(struct swarm *sw, struct speer *sp);
int conn_redial(struct swarm *sw, uint64_t now);
void conn_log_errors(const struct swarm *sw);
int addr_add(struct swarm *sw, const struct uri_peer *where, int learned);
void conn_init(struct swarm *sw);
void conn_report(struct swarm *sw, uint64_t now);
void conn_status(const struct swarm *sw, struct swarm_status *st);

/* serve.c */
int serve_fill(void *arg, uint8_t *dst, size_t len, uint64_t off);
void send_root_and_map(struct swarm *sw, struct speer *sp);
void serve_pump(struct speer *sp);
void serve_request(struct speer *sp, const struct wire_msg *m);
void serve_cancel(struct speer *sp, const struct wire_block *b);
void serve_page(struct speer *sp, uint32_t page);
const char *receipt_take(struct swarm *sw, const uint8_t *blob, size_t len, const char *via,
                         char *signer);
void receipts_check_enough(struct swarm *sw);
void serve_receipt(struct speer *sp, const struct wire_msg *m);
void serve_add(struct swarm *sw, uint32_t c, uint64_t gen, int announce);
void rotate_slots(struct swarm *sw, uint64_t now);
void serve_recheck(struct swarm *sw, const char *who, uint32_t c, uint64_t gen);

/* fetch.c */
void have_clear(struct swarm *sw, struct speer *sp, uint32_t c);
void page_unask(struct swarm *sw, uint32_t pg);
void page_done(struct swarm *sw, uint32_t page);
void check_pages(struct swarm *sw, const char *after);
void on_root(struct speer *sp, const struct wire_msg *m);
void on_have_map(struct speer *sp, const struct wire_msg *m);
void avail_set(struct swarm *sw, uint32_t c);
void chunk_now_available(struct swarm *sw, uint32_t c);
void on_page(struct speer *sp, const struct wire_msg *m);
void on_receipt_ack(struct speer *sp, const struct wire_msg *m);
struct pick_view pick_view_of(const struct swarm *sw);
uint32_t heat_now(const struct swarm *sw);
struct speer *best_peer_for(struct swarm *sw, uint32_t c);
void fetch_urgent(struct swarm *sw, uint32_t c);
void fetch_schedule(struct swarm *sw);
void on_have(struct speer *sp, const struct wire_msg *m);
void send_receipt(struct swarm *sw);

/* xfer.c */
void xfer_drop(struct swarm *sw, struct xfer *x, int requeue);
void xfer_cancel(struct swarm *sw, struct xfer *x, int requeue);
void xfer_cancel_chunk(struct swarm *sw, uint32_t c);
void xfer_start(struct swarm *sw, struct speer *sp, uint32_t c, uint8_t prio);
void xfer_raise(struct xfer *x, uint8_t prio);
void basis_pump(struct swarm *sw);
void commit_start(struct swarm *sw);
void on_piece(struct speer *sp, const struct wire_msg *m);
void on_reject(struct speer *sp, const struct wire_msg *m);

/* picker.c */
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

/* gens.c */
int chunk_put_zero(struct swarm *sw, uint32_t c, const struct manifest_entry *e);
void root_catch_up(struct swarm *sw, struct speer *sp, struct manifest_root *r);
void on_delta(struct speer *sp, const struct wire_msg *m);
void delta_broadcast(struct swarm *sw, const struct speer *except);
void delta_keep(struct swarm *sw, uint8_t *blob, size_t len);

/* live.c */
void rehash_run(void *arg);
void seed_have(struct swarm *sw, const struct wire_msg *m);
void seed_round_cb(evutil_socket_t fd, short what, void *arg);
int seed_throttled(struct swarm *sw);
void seed_converge(struct swarm *sw, uint64_t now);
void seed_lag_init(struct swarm *sw);
uint32_t seed_downtime_target_ms(const struct swarm *sw);
void seed_throttle_cb(evutil_socket_t fd, short what, void *arg);
int seed_write(struct swarm *sw, uint64_t off, const void *data, uint64_t len, int zero, int punch);
void seed_flush(struct swarm *sw, struct flush_waiter *w);

/* export.c */
void chunk_wake(struct swarm *sw, uint32_t c);
void chunk_wake_cb(evutil_socket_t fd, short what, void *arg);
void waiters_call(struct flush_waiter **head, int result);

#endif
