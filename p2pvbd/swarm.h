/*
 * swarm: the set of peers of one volume, and what this process does with
 * them. Both roles share it:
 *
 *  - serving (upload): answer GET_ROOT, GET_PAGE and REQUEST from what this
 *    process holds (the source image, or verified chunks in the store),
 *    with a bounded request queue per peer and output back-pressure;
 *  - fetching (download): get and verify the signed root, fetch pages of the
 *    chunk table in a bounded window, request missing chunks with a bound
 *    on bytes in flight, verify every chunk, write it to the store and
 *    commit it durably; send the completion receipt to the source.
 *
 * Policy and wire behaviour: proto/PROTOCOL.md, "Session behaviour".
 */
#ifndef P2PVBD_SWARM_H
#define P2PVBD_SWARM_H

#include <stdint.h>

#include <event2/event.h>

#include "manifest.h"
#include "uri.h"
#include "vcrypto.h"

/* Bytes of requests outstanding to one peer. 8 MiB covers the bandwidth-delay
 * product of a 1 Gbit/s link at 64 ms round trip. */
#define SWARM_INFLIGHT_MAX (8u * 1024u * 1024u)
/* Pages of the chunk table held (being fetched or with chunks missing). */
#define SWARM_PAGE_WINDOW 4
/* Requests queued per peer before we stop reading from it. */
#define SWARM_UPQ_MAX 256
/* Commit (fdatasync + mark) at least this often, and every this many bytes. */
#define SWARM_COMMIT_MS    1000
#define SWARM_COMMIT_BYTES (64u * 1024u * 1024u)
/* How long fetch waits for the source to acknowledge its receipt. */
#define SWARM_RECEIPT_WAIT_S 10

enum swarm_role { SWARM_SEED, SWARM_FETCH };

struct swarm_stats {
	uint64_t chunks_total;
	uint64_t chunks_zero;
	uint64_t chunks_resumed; /* found present in the state file at start */
	uint64_t chunks_fetched;
	uint64_t bytes_fetched; /* chunk bytes received and verified */
	uint64_t bad_pieces;    /* chunks that failed verification */
	uint64_t bytes_served;
	uint64_t receipts; /* distinct valid receipts (seed) */
	int receipt_acked; /* fetch: the source accepted our receipt */
};

struct swarm_opts {
	enum swarm_role role;
	struct event_base *base;
	const struct vcrypto_identity *identity; /* ours; borrowed */
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint8_t source_key[VCRYPTO_PK_LEN];
	uint8_t join_secret[32];
	int timeout_s;
	uint64_t upload_rate; /* bytes/s, 0 = unlimited */

	/* SWARM_SEED: the signed manifest (borrowed) and the image it describes. */
	const struct manifest *manifest;
	int image_fd;
	int exit_after_receipts; /* 0 = serve until stopped */

	/* SWARM_FETCH */
	const char *out_path;
	int store_flags;
	const struct uri_peer *peers; /* borrowed */
	int npeers;
	int give_up_s; /* fail if no progress is possible for this long */
};

struct swarm;

/* The swarm borrows everything in o; it must outlive it. */
struct swarm *swarm_new(const struct swarm_opts *o);
void swarm_free(struct swarm *s);

/* Listen for peers on host:port (port 0: any); the bound port goes to *bound. */
int swarm_listen(struct swarm *s, const char *host, uint16_t port, uint16_t *bound);

/* Start connecting to the configured peers (fetch). */
void swarm_start(struct swarm *s);

/*
 * The loop exits (event_base_loopexit) when a fetch has completed and its
 * receipt was handled, when a seed has its receipts, or on a fatal error.
 * Then this says how it ended: 0 success, -1 failure (logged).
 */
int swarm_result(const struct swarm *s);

/* Progress: bytes of the volume present/verified, and the volume size (0 until known). */
void swarm_progress(const struct swarm *s, uint64_t *done, uint64_t *total);
const struct swarm_stats *swarm_stats(const struct swarm *s);

/* Stop: tell peers, commit the store. The loop exits. */
void swarm_shutdown(struct swarm *s);

#endif
