/* SPDX-License-Identifier: ISC */
/*
 * announce: the tracker's HTTP query parser and bencode encoder. Pure code:
 * no I/O, no allocation, no globals, no logging. This is what the fuzzer
 * (tests/fuzz/fuzz_announce.c) calls.
 *
 * Query strings follow BEP 3 (announce) and BEP 48 (scrape). Values are
 * percent-decoded (RFC 3986: "%XY" with two hex digits; '+' is a literal
 * plus, not a space, because info_hash and peer_id are binary and every
 * client percent-encodes them). The parser is strict about what it knows
 * (exact lengths, decimal numbers without sign, parameters that must be
 * unique) and ignores parameters it does not know, because clients send
 * many extensions (supportcrypto, no_peer_id, corrupt, trackerid, ...).
 */
#ifndef P2PVBD_ANNOUNCE_H
#define P2PVBD_ANNOUNCE_H

#include <stddef.h>
#include <stdint.h>

#define ANNOUNCE_HASH_LEN    20 /* info_hash: SHA-1 size in BitTorrent v1 */
#define ANNOUNCE_PEER_ID_LEN 20
#define ANNOUNCE_ID_LEN      16 /* a p2pvbd volume id (MANIFEST_ID_LEN) */
/* A whole query string; real announces are under 400 bytes. Bounds the work per request. */
#define ANNOUNCE_MAX_QUERY 4096
/* One raw (still percent-encoded) value; a 20-byte binary value needs at most 60. */
#define ANNOUNCE_MAX_VALUE 256
/* Parameters in one query: clients send about 15; more is abuse. */
#define ANNOUNCE_MAX_PARAMS 64
/* The "key" parameter, decoded; clients send 4 to 8 bytes. */
#define ANNOUNCE_MAX_KEY 32
/*
 * A p2pvbd member's key (PROTOCOL.md §7.8): exactly 64 hex digits, the
 * volume id then the announce token derived from the join secret. It is
 * kept as those 32 bytes (ANNOUNCE_MAX_KEY).
 */
#define ANNOUNCE_P2PVBD_KEY_HEX 64
#define ANNOUNCE_TOKEN_LEN      16
/* The "ip" parameter: the longest textual IPv6 address (INET6_ADDRSTRLEN - 1). */
#define ANNOUNCE_MAX_IP          45
#define ANNOUNCE_NUMWANT_DEFAULT 50
/* More peers than this does not help a client and makes replies large. */
#define ANNOUNCE_NUMWANT_MAX 200
/* info_hash values in one scrape; bounds the reply to a few KiB. */
#define ANNOUNCE_MAX_SCRAPE 64

/* Compact peer entries (BEP 23, BEP 7): address then port, network order. */
#define ANNOUNCE_PEER4_LEN 6
#define ANNOUNCE_PEER6_LEN 18

enum announce_event {
	ANNOUNCE_EV_NONE = 0, /* a regular re-announce (absent, empty or "paused") */
	ANNOUNCE_EV_STARTED = 1,
	ANNOUNCE_EV_COMPLETED = 2,
	ANNOUNCE_EV_STOPPED = 3,
};

/* A validated announce. */
struct announce_req {
	uint8_t info_hash[ANNOUNCE_HASH_LEN];
	uint8_t peer_id[ANNOUNCE_PEER_ID_LEN];
	uint16_t port; /* 1..65535 */
	uint64_t uploaded, downloaded, left;
	enum announce_event event;
	uint32_t numwant; /* default ANNOUNCE_NUMWANT_DEFAULT, capped at ANNOUNCE_NUMWANT_MAX */
	int compact;      /* 0 only if the client sent compact=0 */
	char ip[ANNOUNCE_MAX_IP + 1]; /* "" if absent; not validated as an address */
	uint8_t key[ANNOUNCE_MAX_KEY];
	size_t key_len; /* 0 if absent */
	/* The key has the p2pvbd form: key[] holds volume || token, also here. */
	int p2pvbd;
	uint8_t p2pvbd_volume[ANNOUNCE_ID_LEN];
	uint8_t p2pvbd_token[ANNOUNCE_TOKEN_LEN];
};

/* A validated scrape: 0 info hashes means "every swarm". Duplicates are kept. */
struct announce_scrape_req {
	uint8_t info_hash[ANNOUNCE_MAX_SCRAPE][ANNOUNCE_HASH_LEN];
	unsigned count;
};

/*
 * Parse the query string q[0..len) (the part after '?', without it) of an
 * announce. Required: info_hash, peer_id, port, left; uploaded and
 * downloaded default to 0. 0, or -1 with a one-line reason in err (always
 * NUL-terminated when errlen > 0).
 */
int announce_parse(const char *q, size_t len, struct announce_req *r, char *err, size_t errlen);

/* Same for a scrape (info_hash repeatable, everything else ignored). 0 or -1. */
int announce_parse_scrape(const char *q, size_t len, struct announce_scrape_req *s, char *err,
                          size_t errlen);

/*
 * Bencode writer into a caller-owned buffer. Once the buffer is too small
 * every call is a no-op and `overflow` is set, so a caller checks once at
 * the end. Callers write dictionary keys in sorted order (BEP 3).
 */
struct announce_benc {
	uint8_t *buf;
	size_t len, cap;
	int overflow;
};
void announce_benc_init(struct announce_benc *b, uint8_t *buf, size_t cap);
void announce_benc_int(struct announce_benc *b, int64_t v);
void announce_benc_str(struct announce_benc *b, const void *s, size_t len);
void announce_benc_cstr(struct announce_benc *b, const char *s);
void announce_benc_dict(struct announce_benc *b); /* 'd' ... announce_benc_end */
void announce_benc_list(struct announce_benc *b); /* 'l' ... announce_benc_end */
void announce_benc_end(struct announce_benc *b);

/* d14:failure reason<len>:<reason>e */
void announce_encode_failure(struct announce_benc *b, const char *reason);

/* What the tracker answers to an announce. peers4/peers6 are compact entries, not owned. */
struct announce_reply {
	uint32_t interval, min_interval;
	uint64_t complete, incomplete;
	const uint8_t *peers4;
	size_t npeers4;
	const uint8_t *peers6;
	size_t npeers6; /* 0: the "peers6" key is left out */
};
void announce_encode_reply(struct announce_benc *b, const struct announce_reply *rep);

/* One entry of a scrape reply's "files" dictionary. */
struct announce_scrape_entry {
	uint8_t info_hash[ANNOUNCE_HASH_LEN];
	uint64_t complete, downloaded, incomplete;
};
/*
 * d5:filesd<hash>d8:completei..e10:downloadedi..e10:incompletei..ee...ee.
 * Sorts e[0..n) by info_hash in place (bencoded keys must be sorted) and
 * writes each hash once.
 */
void announce_encode_scrape(struct announce_benc *b, struct announce_scrape_entry *e, size_t n);

#endif
