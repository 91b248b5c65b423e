/* SPDX-License-Identifier: ISC */
/*
 * tmetrics: the tracker's counters, and their rendering in Prometheus' text
 * exposition format (version 0.0.4) for GET /metrics. Pure code: main.c
 * bumps the counters as it answers requests; tmetrics_render reads them and
 * the tracker tables and writes text into a buffer the caller owns. No I/O,
 * no clock of its own, no globals.
 *
 * Cardinality is bounded: every family has a fixed set of label values
 * (events, results, states, the paths and status codes the tracker knows)
 * except p2pvbd_tracker_swarm_peers, which has two series per swarm, for at
 * most TMETRICS_MAX_SWARMS swarms (so never more than --max-swarms allows).
 */
#ifndef P2PVBD_TMETRICS_H
#define P2PVBD_TMETRICS_H

#include <stddef.h>
#include <stdint.h>

#include "announce.h"
#include "tracker.h"

/*
 * Swarms with series of their own in one scrape. Like a scrape without
 * info_hash (TRACKER_SCRAPE_ALL_MAX) it bounds the work and the reply
 * (~200 bytes per swarm) of a request anybody may send, and keeps a
 * Prometheus server's series count sane; p2pvbd_tracker_swarms always has
 * the full count.
 */
#define TMETRICS_MAX_SWARMS 1000

/* The paths the tracker serves; anything else is counted as "other". */
enum tmetrics_path {
	TMETRICS_P_ANNOUNCE,
	TMETRICS_P_SCRAPE,
	TMETRICS_P_STATUS,
	TMETRICS_P_RECEIPT,
	TMETRICS_P_RECEIPTS,
	TMETRICS_P_METRICS,
	TMETRICS_P_OTHER,
	TMETRICS_PATHS,
};

/* The status codes the tracker sends (main.c); any other one is counted as "other". */
enum tmetrics_code {
	TMETRICS_C_200,
	TMETRICS_C_400,
	TMETRICS_C_404,
	TMETRICS_C_405,
	TMETRICS_C_503,
	TMETRICS_C_OTHER,
	TMETRICS_CODES,
};

/* Results of a valid announce: recorded, or refused (a cap, another peer's key). */
enum tmetrics_result { TMETRICS_OK, TMETRICS_REFUSED, TMETRICS_RESULTS };

/* Everything counted since start; zero it, then set the two start times. */
struct tmetrics {
	uint64_t start_wall; /* seconds since the Unix epoch */
	uint64_t start_mono; /* seconds on the clock main.c passes as mono_now */
	/* Valid announces, indexed by enum announce_event and enum tmetrics_result. */
	uint64_t announces[ANNOUNCE_EV_STOPPED + 1][TMETRICS_RESULTS];
	uint64_t scrapes;           /* valid scrapes */
	uint64_t receipts_received; /* POST /receipt requests, valid or not */
	uint64_t receipts_accepted; /* receipts verified and kept */
	uint64_t peers_stopped;     /* peers removed because they announced event=stopped */
	uint64_t peers_expired;     /* peers removed because they went silent */
	uint64_t http[TMETRICS_PATHS][TMETRICS_CODES]; /* replies sent */
};

/* The counter slot of a request path, and of a status code. */
enum tmetrics_path tmetrics_path_of(const char *path);
enum tmetrics_code tmetrics_code_of(int code);

/* A growing text buffer; buf is owned by whoever holds the struct (free(buf)). */
struct tmetrics_out {
	char *buf;
	size_t len, cap;
};

/* Append s as a label value, escaped as the format requires: \ as \\, " as \", LF as \n. */
void tmetrics_put_label_value(struct tmetrics_out *o, const char *s);

/*
 * Append the whole exposition: counters from m, gauges from t (read only),
 * uptime from mono_now. Aborts only on out-of-memory.
 */
void tmetrics_render(struct tmetrics_out *o, const struct tmetrics *m, const struct tracker *t,
                     uint64_t mono_now);

#endif
