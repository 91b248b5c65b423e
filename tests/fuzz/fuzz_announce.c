/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the tracker's query parser (announce_parse,
 * announce_parse_scrape): query strings come from anyone who can reach the
 * tracker. Invariants: every refusal says why; what parses is within its
 * documented bounds; the bencoded reply built from a parsed request (through
 * a small, persistent tracker table with per-address caps and p2pvbd keys),
 * the failure reply and the scrape reply
 * are well-formed bencode with sorted dictionary keys and no trailing bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "announce.h"
#include "manifest.h"
#include "tracker.h"
#include "util.h"
#include "vcrypto.h"

/*
 * Validate one bencoded value at in[*pos..len); 0 or -1. Strict: integers
 * without leading zeros or "-0", string lengths within the input, dictionary
 * keys strings in strictly increasing byte order, bounded nesting.
 */
static int benc_value(const uint8_t *in, size_t len, size_t *pos, int depth)
{
	size_t p = *pos;

	if (depth > 16 || p >= len)
		return -1;
	if (in[p] == 'i') {
		size_t start = ++p;

		if (p < len && in[p] == '-')
			p++;
		if (p >= len || in[p] < '0' || in[p] > '9')
			return -1;
		if (in[p] == '0' && (p + 1 >= len || in[p + 1] != 'e'))
			return -1; /* leading zero */
		if (in[p] == '0' && p > start)
			return -1; /* "-0" */
		while (p < len && in[p] >= '0' && in[p] <= '9')
			p++;
		if (p >= len || in[p] != 'e' || p - start > 20)
			return -1;
		*pos = p + 1;
		return 0;
	}
	if (in[p] >= '0' && in[p] <= '9') {
		size_t n = 0;

		if (in[p] == '0' && p + 1 < len && in[p + 1] != ':')
			return -1;
		while (p < len && in[p] >= '0' && in[p] <= '9') {
			n = n * 10 + (size_t)(in[p] - '0');
			if (n > len)
				return -1;
			p++;
		}
		if (p >= len || in[p] != ':' || len - p - 1 < n)
			return -1;
		*pos = p + 1 + n;
		return 0;
	}
	if (in[p] == 'l' || in[p] == 'd') {
		int dict = in[p] == 'd';
		const uint8_t *prev = NULL;
		size_t prev_len = 0;

		p++;
		while (p < len && in[p] != 'e') {
			if (dict) {
				size_t kstart = p, colon;
				const uint8_t *key;
				size_t klen;
				int c;

				if (in[p] < '0' || in[p] > '9' ||
				    benc_value(in, len, &p, depth + 1) < 0)
					return -1;
				colon = kstart;
				while (in[colon] != ':')
					colon++;
				key = in + colon + 1;
				klen = p - colon - 1;
				if (prev != NULL) {
					c = memcmp(prev, key, prev_len < klen ? prev_len : klen);
					if (c > 0 || (c == 0 && prev_len >= klen))
						return -1; /* unsorted or duplicate key */
				}
				prev = key;
				prev_len = klen;
			}
			if (benc_value(in, len, &p, depth + 1) < 0)
				return -1;
		}
		if (p >= len)
			return -1;
		*pos = p + 1;
		return 0;
	}
	return -1;
}

static void check_benc(const struct announce_benc *b)
{
	size_t pos = 0;

	if (b->overflow || benc_value(b->buf, b->len, &pos, 0) < 0 || pos != b->len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct tracker *t;
	static uint64_t now;
	static struct announce_req r;
	static struct announce_scrape_req s;
	static struct announce_scrape_entry e[ANNOUNCE_MAX_SCRAPE];
	static uint8_t p4[ANNOUNCE_NUMWANT_MAX * ANNOUNCE_PEER4_LEN];
	static uint8_t p6[ANNOUNCE_NUMWANT_MAX * ANNOUNCE_PEER6_LEN];
	static uint8_t buf[ANNOUNCE_MAX_SCRAPE * 200 + sizeof(p4) + sizeof(p6)];
	const char *q = (const char *)data;
	struct announce_benc b;
	struct announce_reply rep;
	struct tracker_addr from = {.family = 4, .ip = {127, 0, 0, 1}}, src;
	const char *why = NULL;
	char err[128];

	if (t == NULL) {
		struct tracker_config cfg = {.interval = 1,
		                             .max_swarms = 8,
		                             .max_peers = 8,
		                             .max_swarms_per_addr = 4,
		                             .max_peers_per_addr = 3};

		if (vcrypto_init() < 0)
			abort();
		log_init("fuzz", -1);
		t = tracker_new(&cfg);
	}

	if (announce_parse(q, size, &r, err, sizeof(err)) < 0) {
		if (err[0] == '\0' || strlen(err) >= sizeof(err))
			abort();
		announce_benc_init(&b, buf, sizeof(buf));
		announce_encode_failure(&b, err);
		check_benc(&b);
	} else {
		if (r.port == 0 || r.numwant > ANNOUNCE_NUMWANT_MAX ||
		    r.key_len > ANNOUNCE_MAX_KEY || strlen(r.ip) > ANNOUNCE_MAX_IP ||
		    (unsigned)r.event > ANNOUNCE_EV_STOPPED || size > ANNOUNCE_MAX_QUERY)
			abort();
		/* A fuzzer-chosen address family and a slowly advancing clock. */
		if (r.info_hash[0] & 1) {
			from.family = 6;
			memcpy(from.ip, r.peer_id, 16);
		}
		from.port = r.port;
		/* The connection's address: one of four, so that the per-address caps bite. */
		src = from;
		src.ip[3] ^= r.peer_id[19] & 3;
		/* A p2pvbd key: half the time for its own volume's swarm (a member, or not). */
		if (r.p2pvbd && (r.info_hash[2] & 1))
			manifest_infohash(r.p2pvbd_volume, r.info_hash);
		now += r.info_hash[1] & 3;
		tracker_expire(t, now);
		announce_benc_init(&b, buf, sizeof(buf));
		if (tracker_announce_src(t, &r, &from, &src, now, &rep, p4, p6, &why) < 0) {
			if (why == NULL)
				abort();
			announce_encode_failure(&b, why);
		} else {
			if (rep.npeers4 + rep.npeers6 > r.numwant)
				abort();
			announce_encode_reply(&b, &rep);
		}
		check_benc(&b);
	}

	if (announce_parse_scrape(q, size, &s, err, sizeof(err)) == 0) {
		if (s.count > ANNOUNCE_MAX_SCRAPE)
			abort();
		for (unsigned i = 0; i < s.count; i++)
			tracker_scrape_one(t, s.info_hash[i], &e[i]);
		announce_benc_init(&b, buf, sizeof(buf));
		announce_encode_scrape(&b, e, s.count);
		check_benc(&b);
	} else if (err[0] == '\0') {
		abort();
	}
	return 0;
}
