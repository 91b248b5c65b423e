/* SPDX-License-Identifier: ISC */
/*
 * tracker: the swarm and peer tables of p2pvbd-tracker, and the receipts it
 * was sent. No I/O and no clock of its own: every call takes `now` (seconds
 * on a monotonic clock), so that expiry is testable; main.c owns the HTTP
 * server and the timer.
 *
 * Memory is bounded by the configuration: at most max_swarms swarms of at
 * most max_peers peers each (about 140 bytes per peer, so the defaults of
 * 10000 x 1000 allow 1.4 GB in the worst case; lower them on small hosts),
 * and TRACKER_MAX_RECEIPTS receipts.
 *
 * Admission (DESIGN.md rule 9): one source address may create at most
 * max_swarms_per_addr swarms and hold at most max_peers_per_addr peers in
 * one swarm, so that one host cannot fill the tables. A swarm becomes a
 * p2pvbd volume's once a member announces with its key (PROTOCOL.md §7.8):
 * from then on only announces with a key of that form are admitted, and
 * each is handed only the peers that sent the same key.
 */
#ifndef P2PVBD_TRACKER_H
#define P2PVBD_TRACKER_H

#include <stddef.h>
#include <stdint.h>

#include "addrtab.h"
#include "announce.h"
#include "manifest.h"

#define TRACKER_INTERVAL_DEFAULT   30
#define TRACKER_MAX_SWARMS_DEFAULT 10000
#define TRACKER_MAX_PEERS_DEFAULT  1000
/* A peer is dropped after 2 x interval + this many seconds without an announce. */
#define TRACKER_GRACE_S 5
/* Receipts kept in total, and per volume; each is ~200 bytes, so 1 MiB at most. */
#define TRACKER_MAX_RECEIPTS     4096
#define TRACKER_MAX_RECEIPTS_VOL 256
/* A scrape without info_hash lists at most this many swarms (~100 KiB of reply). */
#define TRACKER_SCRAPE_ALL_MAX 1000
/*
 * Swarms one address may create: a host seeds a few volumes or torrents; far
 * more is someone filling the table (40 addresses are needed to fill the
 * default --max-swarms).
 */
#define TRACKER_MAX_SWARMS_PER_ADDR_DEFAULT 256
/*
 * Peers one address may hold in one swarm: a host runs one or a few
 * clients per torrent (more behind a NAT); 1000 fake peers from one address
 * is what this stops.
 */
#define TRACKER_MAX_PEERS_PER_ADDR_DEFAULT 32

struct tracker_config {
	unsigned interval;            /* seconds between announces that we ask for */
	unsigned max_swarms;          /* swarms at once; a new info_hash past it is refused */
	unsigned max_peers;           /* peers per swarm; a new peer past it is refused */
	unsigned max_swarms_per_addr; /* swarms one source address may create; 0: no cap */
	unsigned max_peers_per_addr;  /* peers of one source address in a swarm; 0: no cap */
};

/* A peer's address as the tracker hands it out. */
struct tracker_addr {
	int family; /* 4 or 6 */
	uint8_t ip[16];
	uint16_t port;
};

struct tracker_peer {
	uint8_t peer_id[ANNOUNCE_PEER_ID_LEN];
	struct tracker_addr addr;
	uint64_t uploaded, downloaded, left;
	uint64_t last_seen; /* `now` of its last announce */
	uint8_t key[ANNOUNCE_MAX_KEY];
	uint8_t key_len;
	uint8_t completed;      /* counted in the swarm's `downloaded` already */
	uint8_t p2pvbd;         /* announced with a p2pvbd key for this swarm's volume */
	struct addrtab_key src; /* the address its announces come from (the caps count it) */
};

struct tracker_swarm {
	uint8_t info_hash[ANNOUNCE_HASH_LEN];
	struct tracker_peer *peer; /* owned, npeer used of cap */
	unsigned npeer, cap;
	uint64_t complete, downloaded; /* seeders now; completed events ever */
	struct tracker_swarm *next;    /* hash chain */
	struct addrtab_key creator;    /* the source address whose announce created it */
	int p2pvbd;                    /* a p2pvbd volume's: members only (tracker.h, top) */
};

struct tracker_receipt {
	struct manifest_receipt rc;
	uint64_t received; /* wall-clock seconds */
};

struct tracker {
	struct tracker_config cfg;
	struct tracker_swarm **bucket; /* owned; nbucket is a power of two */
	size_t nbucket;
	unsigned nswarm;
	uint64_t npeer;                  /* over all swarms */
	struct tracker_receipt *receipt; /* owned, nreceipt used of TRACKER_MAX_RECEIPTS */
	unsigned nreceipt;
	uint64_t rng_seed;       /* secret per process: keys the bucket hash */
	uint64_t rng;            /* xorshift state for picking peers */
	struct addrtab *created; /* owned: swarms per creator address */
};

/* A new, empty tracker (never NULL; aborts on out-of-memory). Free with tracker_free. */
struct tracker *tracker_new(const struct tracker_config *cfg);
void tracker_free(struct tracker *t);

/* Seconds after which a silent peer is dropped: 2 x interval + TRACKER_GRACE_S. */
uint64_t tracker_peer_timeout(const struct tracker *t);

/*
 * Record an announce from `from` (already the address to hand out) and
 * fill rep with the swarm's counts and up to rq->numwant other peers,
 * written into peers4 (room for ANNOUNCE_NUMWANT_MAX * ANNOUNCE_PEER4_LEN
 * bytes) and peers6 (ANNOUNCE_NUMWANT_MAX * ANNOUNCE_PEER6_LEN). 0, or -1
 * with a reason for a "failure reason" in *why (static text).
 */
int tracker_announce(struct tracker *t, const struct announce_req *rq,
                     const struct tracker_addr *from, uint64_t now, struct announce_reply *rep,
                     uint8_t *peers4, uint8_t *peers6, const char **why);
/*
 * The same, where the announce came from src (the connection's address),
 * which the per-address caps count; `from` may differ (the ip= parameter
 * of a local client). tracker_announce uses from as src.
 */
int tracker_announce_src(struct tracker *t, const struct announce_req *rq,
                         const struct tracker_addr *from, const struct tracker_addr *src,
                         uint64_t now, struct announce_reply *rep, uint8_t *peers4, uint8_t *peers6,
                         const char **why);
/*
 * 1 if rq carries a p2pvbd key whose volume id is that of rq's info_hash
 * (manifest_infohash): an announce from someone who knows the volume.
 */
int tracker_is_p2pvbd(const struct announce_req *rq);

/* The swarm of info_hash, or NULL. */
struct tracker_swarm *tracker_find(const struct tracker *t, const uint8_t *info_hash);

/*
 * Every swarm, in no particular order, for readers outside this module (the
 * status and metrics pages): for (s = tracker_first(t, &it); s != NULL;
 * s = tracker_next(t, &it)). The table must not change meanwhile.
 */
struct tracker_iter {
	size_t bucket;
	const struct tracker_swarm *s;
};
const struct tracker_swarm *tracker_first(const struct tracker *t, struct tracker_iter *it);
const struct tracker_swarm *tracker_next(const struct tracker *t, struct tracker_iter *it);

/* Scrape counts of one swarm into e (zeros for an unknown info_hash). */
void tracker_scrape_one(const struct tracker *t, const uint8_t *info_hash,
                        struct announce_scrape_entry *e);
/* Counts of up to max swarms into e; returns how many. */
size_t tracker_scrape_all(const struct tracker *t, struct announce_scrape_entry *e, size_t max);

/* Drop the peers silent longer than tracker_peer_timeout, and empty swarms. Returns peers dropped.
 */
unsigned tracker_expire(struct tracker *t, uint64_t now);

/*
 * Keep a receipt whose signature the caller verified. The same signer,
 * volume and generation again replaces the older copy. 0, or -1 with *why
 * when the per-volume or total cap is reached.
 */
int tracker_receipt_add(struct tracker *t, const struct manifest_receipt *rc, uint64_t wall_now,
                        const char **why);

#endif
