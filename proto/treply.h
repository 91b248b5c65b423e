/* SPDX-License-Identifier: ISC */
/*
 * treply: decoding what a BitTorrent HTTP tracker answers (BEP 3, compact
 * peer lists of BEP 23 and BEP 7), plus p2pvbd's receipt list. Pure code:
 * no I/O, no allocation; the fuzzers call it.
 *
 * An announce reply is a bencoded dictionary:
 *   d8:intervali1800e5:peers<6n bytes>6:peers6<18n bytes>e
 * or, on failure, d14:failure reason<text>e. The peer list may also be the
 * non-compact form (a list of dictionaries with "ip" and "port"). The reply
 * of GET /receipts (p2pvbd-tracker) is d8:receipts<200n bytes>e.
 */
#ifndef P2PVBD_TREPLY_H
#define P2PVBD_TREPLY_H

#include <stddef.h>
#include <stdint.h>

/* Peers kept from one reply; more are ignored (a tracker sends 50 by default). */
#define TREPLY_MAX_PEERS 200
/* Nesting accepted when skipping values we do not use. */
#define TREPLY_MAX_DEPTH 16

struct treply_peer {
	uint8_t family; /* 4 or 6 */
	uint8_t addr[16];
	uint16_t port;
};

struct treply {
	int64_t interval;     /* seconds, -1 if absent */
	int64_t min_interval; /* seconds, -1 if absent */
	const char *failure;  /* points into the input; not NUL-terminated */
	size_t failure_len;
	struct treply_peer peers[TREPLY_MAX_PEERS];
	int npeers;
	const uint8_t *receipts; /* points into the input */
	size_t receipts_len;     /* a multiple of the receipt length, checked by the caller */
};

/*
 * Decode len bytes at buf into r. Strict: the whole input must be one
 * dictionary; malformed bencode, trailing bytes, a compact list whose length
 * is not a multiple of 6 (18 for peers6) or a port 0 are errors. Returns 0,
 * or -1 with a one-line reason in *why.
 */
int treply_parse(const uint8_t *buf, size_t len, struct treply *r, const char **why);

#endif
