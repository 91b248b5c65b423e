/* SPDX-License-Identifier: ISC */
/*
 * tclient: a BitTorrent HTTP tracker client (BEP 3, compact lists of BEP 23
 * and BEP 7), plus p2pvbd-tracker's receipt exchange. One per tracker URL.
 *
 * It announces at start (event=started), again at the interval the tracker
 * asks for, at once when told the volume is complete (event=completed), and
 * backs off (up to the interval, at most TCLIENT_BACKOFF_MAX_S) while the
 * tracker cannot be reached. Everything runs on the caller's event loop; a tracker that is
 * down only delays announces, it never blocks or fails the caller. When the caller leaves,
 * tclient_stop_all tells the trackers (event=stopped), waiting TCLIENT_STOP_WAIT_MS at most.
 */
#ifndef P2PVBD_TCLIENT_H
#define P2PVBD_TCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "manifest.h"
#include "treply.h"
#include "vcrypto.h"

/* Bound on a reply body: 200 peers of 18 bytes, or 256 receipts of 200 bytes. */
#define TCLIENT_MAX_BODY (64u * 1024u)
_Static_assert(256u * MANIFEST_RECEIPT_LEN + 64u <= TCLIENT_MAX_BODY,
               "a tracker's 256 receipts of a volume fit a reply");
/* A request the tracker has not answered in this long has failed. */
#define TCLIENT_TIMEOUT_S 10
/* Interval bounds: a tracker cannot make us announce more often than this... */
#define TCLIENT_MIN_INTERVAL_S 1
/* ...nor less often than this (peers expire at the tracker otherwise). */
#define TCLIENT_MAX_INTERVAL_S 3600
/* Longest wait before retrying a tracker that did not answer (and never more than its interval). */
#define TCLIENT_BACKOFF_MAX_S 60
/* How often the source asks for receipts while it waits for them. */
#define TCLIENT_RECEIPT_POLL_S 2
/* Peers asked for per announce. */
#define TCLIENT_NUMWANT 50
/*
 * Longest wait for the trackers to answer event=stopped at exit. A tracker
 * across a WAN answers in a few round trips; one that is down must not hold
 * up an exit (a migration script waits for it) by more than about 2 s.
 */
#define TCLIENT_STOP_WAIT_MS 1500

struct tclient_ops {
	/* A reply named these peers (maybe including ones already known). */
	void (*on_peers)(void *arg, const struct treply_peer *peers, int n);
	/* Counters to report: uploaded and downloaded bytes, bytes left (0 = complete). */
	void (*counters)(void *arg, uint64_t *uploaded, uint64_t *downloaded, uint64_t *left);
	/* GET /receipts answered: len bytes of concatenated receipts (unverified). */
	void (*on_receipts)(void *arg, const uint8_t *blob, size_t len);
	/* POST /receipt ended: ok != 0 if the tracker kept it. */
	void (*on_receipt_posted)(void *arg, int ok);
};

struct tclient;

/* A peer id (BitTorrent's peer_id) is this long. */
#define TCLIENT_PEER_ID_LEN 20

/*
 * A client for the tracker at url ("http://host[:port]/path"; the path is
 * usually /announce). port: where we accept peers (reported to the tracker).
 * join_secret: the volume's, for the announce key (not kept). Returns NULL
 * (logged) if the URL is unusable. Nothing is sent before tclient_start.
 * ops and arg are borrowed.
 */
struct tclient *tclient_new(struct event_base *base, struct evdns_base *dns, const char *url,
                            const uint8_t volume_id[MANIFEST_ID_LEN],
                            const uint8_t join_secret[VCRYPTO_SECRET_LEN],
                            const uint8_t peer_id[TCLIENT_PEER_ID_LEN], uint16_t port,
                            const struct tclient_ops *ops, void *arg);

/*
 * The key every member of a volume sends with its announces (BEP 3's key;
 * PROTOCOL.md §7.8): 64 lower-case hex digits, the volume id then the
 * first 16 bytes of BLAKE2b-256("p2pvbd-announce-v1" || join secret ||
 * volume id). The tracker admits to a volume's swarm only announces with
 * this key and hands each only the peers that sent the same one; the token
 * proves nothing else (it does not reveal the secret).
 */
#define TCLIENT_KEY_HEX          64
#define TCLIENT_KEY_TOKEN_DOMAIN "p2pvbd-announce-v1"
void tclient_announce_key(const uint8_t volume_id[MANIFEST_ID_LEN],
                          const uint8_t join_secret[VCRYPTO_SECRET_LEN],
                          char out[TCLIENT_KEY_HEX + 1]);
void tclient_free(struct tclient *t);

/* Announce now (event=started), then keep announcing. */
void tclient_start(struct tclient *t);
/* The volume is complete: announce event=completed now. */
void tclient_completed(struct tclient *t);
/* Post a completion receipt (MANIFEST_RECEIPT_LEN bytes, copied); retried until accepted. */
void tclient_post_receipt(struct tclient *t, const uint8_t *receipt);
/* Ask for the volume's receipts every TCLIENT_RECEIPT_POLL_S (on != 0) or stop. */
void tclient_poll_receipts(struct tclient *t, int on);
/* The tracker's URL, for logs. */
const char *tclient_url(const struct tclient *t);
/*
 * We leave: tell each tracker of t[0..n) that was sent an announce, with
 * event=stopped, so that it stops handing out our address at once instead
 * of after its peer timeout. Best effort: it runs a private event loop (the
 * caller's loop and its events are left alone) for at most
 * TCLIENT_STOP_WAIT_MS; what fails is logged at debug level. Call it once,
 * after the caller's loop has ended and before tclient_free.
 */
void tclient_stop_all(struct tclient *const *t, int n);

#endif
