/* SPDX-License-Identifier: ISC */
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
 * Policy and wire behaviour: proto/PROTOCOL.md, "Session behaviour". The
 * API the NBD export uses is in swarm_export.h (included here); the code is
 * in p2pvbd/swarm/, one concern per file (see swarm/swarm_int.h).
 */
#ifndef P2PVBD_SWARM_H
#define P2PVBD_SWARM_H

#include <stdint.h>

#include <event2/event.h>

#include "manifest.h"
#include "swarm_export.h"
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
#define SWARM_STALL_REPORT_S 10 /* no progress this long: log what the volume waits for */

enum swarm_role { SWARM_SEED, SWARM_FETCH };

struct swarm_stats {
	uint64_t chunks_total;
	uint64_t chunks_zero;
	uint64_t chunks_resumed; /* found present in the state file at start */
	uint64_t chunks_fetched;
	uint64_t chunks_basis;     /* taken from the --basis file (hash matched) */
	uint64_t bytes_fetched;    /* chunk bytes received and verified */
	uint64_t bad_pieces;       /* chunks that failed verification */
	uint64_t bytes_from_peers; /* of bytes_fetched, from peers other than the source */
	uint64_t bytes_discarded;  /* piece bytes received twice or no longer wanted (endgame) */
	uint64_t source_offloads;  /* source requests taken back: a destination had the chunk */
	uint64_t bytes_served;
	uint64_t chunks_served;  /* chunks whose last block went out to a peer */
	uint64_t receipts;       /* distinct valid receipts (seed) */
	uint64_t chunks_dirty;   /* seed -e: chunks the VM wrote since they were hashed */
	uint64_t bytes_written;  /* seed -e: bytes the VM wrote */
	uint64_t deltas;         /* seed: deltas published; fetch: deltas applied */
	uint64_t chunks_changed; /* chunks the deltas changed (fetch: that we then fetched again) */
	uint64_t deltas_refused; /* fetch: deltas that did not verify (forged, corrupt) */
	int receipt_acked;       /* fetch: the source or a tracker accepted our receipt */
	uint64_t writes_refused; /* seed -e: the VM's writes refused while frozen */
};

struct seedgen;
struct imgsrc;

struct swarm_opts {
	enum swarm_role role;
	struct event_base *base;
	const struct vcrypto_identity *identity; /* ours; borrowed */
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint8_t source_key[VCRYPTO_PK_LEN];
	uint8_t join_secret[VCRYPTO_SECRET_LEN];
	int timeout_s;
	uint64_t upload_rate; /* bytes/s, 0 = unlimited */
	/* Trackers to announce to (http:// announce URLs; borrowed). */
	const char *const *trackers;
	int ntrackers;

	/*
	 * SWARM_SEED: the signed manifest (borrowed; the swarm moves it to new
	 * generations as the VM writes, signing with identity) and its image.
	 */
	struct manifest *manifest;
	/* The image, read (imgsrc.h: a file or an NBD server; borrowed). */
	struct imgsrc *image_src;
	/* seed -e: the image file the VM's writes go to (else -1). */
	int image_fd;
	int exit_after_receipts; /* 0 = serve until stopped */
	/* Count receipts only from these signers (--receipt-from; borrowed); 0: from any member. */
	const uint8_t (*receipt_from)[VCRYPTO_PK_LEN];
	int nreceipt_from;
	uint64_t max_dirty_rate; /* seed -e: cap on the VM's write rate, bytes/s (0: none) */
	int write_through;       /* seed -e: a write is done once a destination holds it */
	/*
	 * seed -e: the switchover cost to reach (ms; 0: SWARM_DOWNTIME_TARGET_MS)
	 * and whether to slow the VM's writes by itself when the copy does not
	 * converge towards it (auto-converge; PROTOCOL.md §9.2).
	 */
	uint32_t downtime_target_ms;
	int no_auto_converge;
	const char *image_path; /* the image's path, for status (borrowed; may be NULL) */
	/* Seed without -e: the image must not change; a chunk a peer reports corrupt is checked. */
	int image_fixed;
	/* The durable generation record (seed -e): raised before each delta; not owned. */
	struct seedgen *seedgen;

	/* SWARM_FETCH */
	const char *out_path;
	/* Prefix of the sidecar files (state, pages): out_path when NULL. */
	const char *sidecar_path;
	int store_flags;
	const struct uri_peer *peers; /* borrowed */
	int npeers;
	int give_up_s; /* fail if no progress is possible for this long */
	int no_boost;  /* faults get no priority (the benchmark's control) */
	int lazy;      /* fetch only what the local VM reads: no background transfer */
	/* An older copy of the image: chunks whose hash matches are taken from it. */
	const char *basis_path;
};

/* The swarm borrows everything in o; it must outlive it. */
struct swarm *swarm_new(const struct swarm_opts *o);
void swarm_free(struct swarm *s);

/* Listen for peers on host:port (port 0: any); the bound port goes to *bound. */
int swarm_listen(struct swarm *s, const char *host, uint16_t port, uint16_t *bound);

/*
 * Start: announce to the trackers (both roles; after swarm_listen, whose
 * port they are told) and connect to the configured peers (fetch).
 */
void swarm_start(struct swarm *s);

/*
 * The loop exits (event_base_loopexit) when a fetch has completed and its
 * receipt was handled, when a seed has its receipts, or on a fatal error.
 * Then this says how it ended: 0 success, -1 failure (logged).
 */
int swarm_result(const struct swarm *s);

/*
 * Fault latency at a destination that exports its image (fetch -e): seconds
 * from a VM read that found a chunk missing (swarm_fault) until the chunk was
 * readable. Buckets from 1 ms (a chunk on a quiet LAN) to 10 s (a link that
 * is badly overloaded) in 1-2.5-5 steps; slower faults land in the last.
 */
#define SWARM_FAULT_BUCKETS 13
extern const uint32_t swarm_fault_le_us[SWARM_FAULT_BUCKETS]; /* upper bounds, microseconds */
struct swarm_fault_hist {
	uint64_t bucket[SWARM_FAULT_BUCKETS + 1]; /* per bucket, not cumulative; last: > 10 s */
	uint64_t count;
	double sum_s;
};

/* What `p2pvbd status` shows (rates in bytes/s, smoothed over a few seconds). */
struct swarm_status {
	int seed;            /* 1: the source; 0: a destination */
	int have_root;       /* the volume is known */
	int complete;        /* destination: every chunk verified and durable */
	int final;           /* the generation in use is final (the source froze) */
	uint64_t generation; /* of the manifest in use */
	uint64_t image_size; /* 0 until known */
	uint32_t chunk_size;
	uint32_t chunks_total;
	uint64_t bytes_done;  /* destination: verified bytes held */
	int peers;            /* connected (authenticated) */
	double fetch_rate;    /* destination: verified bytes in */
	double serve_rate;    /* piece bytes out */
	double write_rate;    /* seed -e: bytes the VM writes */
	uint64_t dirty_bytes; /* seed -e: bytes of the chunks changed since hashed */
	uint64_t lag_bytes;   /* seed -e: bytes of published chunks no destination holds yet */
	double auto_rate;     /* seed -e: auto-converge's cap on the VM's writes (0: none) */
	uint32_t downtime_target_ms; /* seed -e: the switchover cost auto-converge aims at */
	/* Monitoring (p2pvbd status --json, --metrics). */
	uint8_t volume_id[MANIFEST_ID_LEN];
	const char *output;  /* fetch: OUT; seed: the image (borrowed from the options; or NULL) */
	uint64_t receipts;   /* seed: distinct valid receipts counted */
	uint64_t bytes_left; /* fetch: bytes still to travel (swarm_travel's total - done) */
	uint32_t faults_waiting; /* fetch -e: chunks the VM's reads wait for now */
	struct swarm_fault_hist fault_latency;
	/* Connections before authentication (DESIGN.md rule 9, PROTOCOL.md §4.6). */
	int handshakes;              /* accepted connections in their handshake now */
	uint64_t handshakes_refused; /* closed at once: PREAUTH_PER_ADDR from that address */
	uint64_t handshakes_dropped; /* closed to make room: PREAUTH_MAX were in progress */
	uint64_t handshakes_late;    /* not done by the handshake's deadline (either side) */
	uint64_t frames_late;        /* peers dropped for a frame that arrived too slowly */
};
void swarm_status(const struct swarm *s, struct swarm_status *st);

/*
 * One authenticated peer, for monitoring. The handshake says only whether a
 * peer holds the source key, so a role is "source" or "peer".
 */
struct swarm_peer_info {
	char address[80];  /* "host:port": as dialled, or the far end of an accepted one */
	const char *role;  /* "source" or "peer" (a static string) */
	double fetch_rate; /* piece bytes/s received from it, smoothed like swarm_status's */
	double serve_rate; /* piece bytes/s sent to it, likewise */
	int64_t chunks;    /* chunks it holds by its have-map; -1 unknown (a seed keeps none) */
	uint64_t bytes_fetched; /* piece bytes received from it on this connection */
	uint64_t bytes_served;  /* piece bytes sent to it on this connection */
};
/*
 * Copy up to max of the authenticated peers into out (the caller's array;
 * nothing in it points into the swarm but role, which is static). Returns
 * how many there are, which may be more than max: call with max 0 to size.
 */
int swarm_peer_list(const struct swarm *s, struct swarm_peer_info *out, int max);

/* Progress: bytes of the volume present/verified, and the volume size (0 until known). */
void swarm_progress(const struct swarm *s, uint64_t *done, uint64_t *total);
/*
 * The same for the bytes that must travel: the volume less its zero chunks
 * (known as the pages of the chunk table arrive: until all have, the total
 * is an upper bound).
 */
void swarm_travel(const struct swarm *s, uint64_t *done, uint64_t *total);
const struct swarm_stats *swarm_stats(const struct swarm *s);
/* A destination holds every chunk, verified and durable. */
int swarm_complete(const struct swarm *s);
/*
 * fetch --qmp: release OUT's image lock for QEMU to open OUT itself, and
 * take it back if the move failed (0, or -1 if it cannot: logged).
 */
void swarm_output_unlock(struct swarm *s);
int swarm_output_relock(struct swarm *s);

/*
 * Live migration, at the source (seed -e). The VM's writes make chunks
 * dirty; they are hashed again continuously, in rounds, and each round
 * publishes a signed delta. swarm_freeze refuses further writes, publishes
 * the rest as the final generation and then calls fn(arg, 0) (or -1 if
 * it could not). swarm_thaw undoes it (a migration rolled back): writes
 * are taken again and the next generation is not final.
 */
void swarm_freeze(struct swarm *s, void (*fn)(void *arg, int result), void *arg);
void swarm_thaw(struct swarm *s);
/*
 * Set --max-dirty-rate now (bytes/s, 0: none): seed --qmp sets it only
 * once the bulk copy of the VM's disk is done, which it must not slow.
 */
void swarm_set_max_dirty_rate(struct swarm *s, uint64_t rate);
/*
 * Lift every cap on the VM's writes for good (--max-dirty-rate and
 * auto-converge) and let the writes that wait go: seed --qmp detaching,
 * whose QMP commands drain the guest's I/O through our export.
 */
void swarm_unthrottle(struct swarm *s);

/* Stop: tell peers, commit the store. The loop exits. */
void swarm_shutdown(struct swarm *s);

#endif
