/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for the tracker: the announce/scrape query parser (valid
 * requests, binary percent-decoding, every malformed case with its reason),
 * the bencode encoder byte for byte, the volume info_hash derivation against
 * libsodium directly, and the tracker tables (peer lists, stopped, caps,
 * expiry, receipts) with an explicit clock.
 */
#include <criterion/criterion.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "announce.h"
#include "manifest.h"
#include "tracker.h"
#include "vcrypto.h"

/* Percent-encoded 20 bytes 0x00, 0x01, ..., 0x13, mixing upper and lower case hex. */
#define IH_ENC  "%00%01%02%03%04%05%06%07%08%09%0a%0B%0c%0D%0e%0F%10%11%12%13"
#define PID     "-XX0001-abcdefghijkl" /* 20 bytes, unreserved characters only */
#define BASE_RQ "info_hash=" IH_ENC "&peer_id=" PID "&port=6881&left=0"

static int parse(const char *q, struct announce_req *r, char *err)
{
	return announce_parse(q, strlen(q), r, err, 128);
}

/* A parse that must fail, with a reason containing `want`. */
static void refuse(const char *q, const char *want)
{
	struct announce_req r;
	char err[128];

	cr_assert_eq(parse(q, &r, err), -1, "accepted: %s", q);
	cr_assert(strstr(err, want) != NULL, "query %s: reason '%s' lacks '%s'", q, err, want);
}

Test(announce, valid_full)
{
	struct announce_req r;
	char err[128];
	uint8_t ih[20];

	for (int i = 0; i < 20; i++)
		ih[i] = (uint8_t)i;
	cr_assert_eq(parse("info_hash=" IH_ENC "&peer_id=" PID "&port=51413&uploaded=1"
	                   "&downloaded=18446744073709551615&left=1234&event=started&numwant=7"
	                   "&compact=1&ip=10.1.2.3&key=%ff%00ab&supportcrypto=1&no_peer_id=1",
	                   &r, err),
	             0, "%s", err);
	cr_assert_arr_eq(r.info_hash, ih, 20);
	cr_assert_arr_eq(r.peer_id, PID, 20);
	cr_assert_eq(r.port, 51413);
	cr_assert_eq(r.uploaded, 1);
	cr_assert_eq(r.downloaded, UINT64_MAX);
	cr_assert_eq(r.left, 1234);
	cr_assert_eq(r.event, ANNOUNCE_EV_STARTED);
	cr_assert_eq(r.numwant, 7);
	cr_assert_eq(r.compact, 1);
	cr_assert_str_eq(r.ip, "10.1.2.3");
	cr_assert_eq(r.key_len, 4);
	cr_assert_arr_eq(r.key,
	                 "\xff\x00"
	                 "ab",
	                 4);
}

Test(announce, defaults_and_events)
{
	struct announce_req r;
	char err[128];

	cr_assert_eq(parse(BASE_RQ, &r, err), 0, "%s", err);
	cr_assert_eq(r.event, ANNOUNCE_EV_NONE);
	cr_assert_eq(r.numwant, ANNOUNCE_NUMWANT_DEFAULT);
	cr_assert_eq(r.compact, 1);
	cr_assert_eq(r.uploaded, 0);
	cr_assert_eq(r.key_len, 0);
	cr_assert_str_eq(r.ip, "");
	cr_assert_eq(parse(BASE_RQ "&event=completed&compact=0", &r, err), 0);
	cr_assert_eq(r.event, ANNOUNCE_EV_COMPLETED);
	cr_assert_eq(r.compact, 0);
	cr_assert_eq(parse(BASE_RQ "&event=stopped", &r, err), 0);
	cr_assert_eq(r.event, ANNOUNCE_EV_STOPPED);
	cr_assert_eq(parse(BASE_RQ "&event=empty", &r, err), 0);
	cr_assert_eq(r.event, ANNOUNCE_EV_NONE);
	cr_assert_eq(parse(BASE_RQ "&event=", &r, err), 0);
	cr_assert_eq(r.event, ANNOUNCE_EV_NONE);
	/* numwant above the cap is capped, not refused; empty segments are skipped. */
	cr_assert_eq(parse("&&" BASE_RQ "&&numwant=100000&", &r, err), 0, "%s", err);
	cr_assert_eq(r.numwant, ANNOUNCE_NUMWANT_MAX);
	cr_assert_eq(parse(BASE_RQ "&numwant=0", &r, err), 0);
	cr_assert_eq(r.numwant, 0);
	/* An unknown parameter may repeat and carry anything. */
	cr_assert_eq(parse(BASE_RQ "&x=%zz&x=1&x", &r, err), 0, "%s", err);
}

Test(announce, binary_info_hash)
{
	struct announce_req r;
	char err[128];
	/* Raw unreserved characters mixed with escapes, '+' literal, high bytes. */
	const char *q =
	    "info_hash=a%FFb+%2B%00%80%25%26%3Dxyz12345678&peer_id=" PID "&port=1&left=5";
	const uint8_t want[20] = {'a', 0xff, 'b', '+', '+', 0x00, 0x80, '%', '&', '=',
	                          'x', 'y',  'z', '1', '2', '3',  '4',  '5', '6', '7'};

	/* That is 21 bytes: one too many. */
	refuse(q, "info_hash must be 20 bytes");
	q = "info_hash=a%FFb+%2B%00%80%25%26%3Dxyz1234567&peer_id=" PID "&port=1&left=5";
	cr_assert_eq(parse(q, &r, err), 0, "%s", err);
	cr_assert_arr_eq(r.info_hash, want, 20);
	cr_assert_eq(r.port, 1);
}

Test(announce, malformed)
{
	refuse("", "missing info_hash");
	refuse("info_hash=" IH_ENC "&port=1&left=0", "missing peer_id");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&left=0", "missing port");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=1", "missing left");
	refuse("info_hash=%00%01&peer_id=" PID "&port=1&left=0", "info_hash must be 20 bytes");
	refuse("info_hash=" IH_ENC "&peer_id=short&port=1&left=0", "peer_id must be 20 bytes");
	refuse("info_hash=" IH_ENC "%0&peer_id=" PID "&port=1&left=0", "bad percent-encoding");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "%g1&port=1&left=0", "bad percent-encoding");
	refuse("info_hash=" IH_ENC "%&peer_id=" PID "&port=1&left=0", "bad percent-encoding");
	refuse(BASE_RQ "&info_hash=" IH_ENC, "duplicate parameter info_hash");
	refuse(BASE_RQ "&port=2", "duplicate parameter port");
	refuse(BASE_RQ "&left=1", "duplicate parameter left");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=0&left=0", "bad port");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=65536&left=0", "bad port");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=-1&left=0", "bad port");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=&left=0", "bad port");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=80x&left=0", "bad port");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=1&left=-5", "bad number in left");
	refuse("info_hash=" IH_ENC "&peer_id=" PID "&port=1&left=18446744073709551616",
	       "bad number in left");
	refuse(BASE_RQ "&uploaded=1e3", "bad number in uploaded");
	refuse(BASE_RQ "&downloaded=+1", "bad number in downloaded");
	refuse(BASE_RQ "&numwant= 5", "bad number in numwant");
	refuse(BASE_RQ "&event=paused2", "bad event");
	refuse(BASE_RQ "&compact=2", "bad compact");
	refuse(BASE_RQ "&key=000000000000000000000000000000000", "key too long");
	refuse(BASE_RQ "&ip=0000:0000:0000:0000:0000:0000:255.255.255.2551", "bad ip");
	refuse(BASE_RQ "&ip=1%002", "bad ip");
}

Test(announce, overlong)
{
	char q[ANNOUNCE_MAX_QUERY + 64];
	int n;

	/* A value just over the per-value limit. */
	n = snprintf(q, sizeof(q), "%s&key=", BASE_RQ);
	memset(q + n, 'a', ANNOUNCE_MAX_VALUE + 1);
	q[n + ANNOUNCE_MAX_VALUE + 1] = '\0';
	refuse(q, "value of key too long");
	/* The whole query over its limit (in an unknown parameter). */
	n = snprintf(q, sizeof(q), "%s&pad=", BASE_RQ);
	memset(q + n, 'a', sizeof(q) - 1 - (size_t)n);
	q[sizeof(q) - 1] = '\0';
	refuse(q, "query string too long");
	/* Too many parameters. */
	n = snprintf(q, sizeof(q), "%s", BASE_RQ);
	for (int i = 0; i < ANNOUNCE_MAX_PARAMS; i++)
		n += snprintf(q + n, sizeof(q) - (size_t)n, "&x=%d", i);
	refuse(q, "too many parameters");
}

Test(announce, scrape)
{
	struct announce_scrape_req s;
	char err[128], q[ANNOUNCE_MAX_QUERY];
	int n = 0;

	cr_assert_eq(announce_parse_scrape("", 0, &s, err, sizeof(err)), 0);
	cr_assert_eq(s.count, 0);
	n = snprintf(q, sizeof(q), "info_hash=%s&info_hash=%s&foo=bar&info_hash=%s", IH_ENC,
	             "aaaaaaaaaaaaaaaaaaaa", IH_ENC);
	cr_assert_eq(announce_parse_scrape(q, (size_t)n, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(s.count, 3);
	cr_assert_arr_eq(s.info_hash[1], "aaaaaaaaaaaaaaaaaaaa", 20);
	cr_assert_eq(s.info_hash[2][19], 0x13);

	cr_assert_eq(announce_parse_scrape("info_hash=abc", 13, &s, err, sizeof(err)), -1);
	cr_assert(strstr(err, "20 bytes") != NULL, "%s", err);
	cr_assert_eq(announce_parse_scrape("info_hash=%zz", 13, &s, err, sizeof(err)), -1);
	cr_assert(strstr(err, "percent") != NULL, "%s", err);

	n = 0;
	for (int i = 0; i <= ANNOUNCE_MAX_SCRAPE; i++)
		n += snprintf(q + n, sizeof(q) - (size_t)n, "&info_hash=aaaaaaaaaaaaaaaaaaaa");
	cr_assert_eq(announce_parse_scrape(q, (size_t)n, &s, err, sizeof(err)), -1);
	cr_assert(strstr(err, "too many") != NULL, "%s", err);
}

static void assert_benc(const struct announce_benc *b, const char *want, size_t want_len)
{
	cr_assert_eq(b->overflow, 0);
	cr_assert_eq(b->len, want_len, "length %zu, want %zu", b->len, want_len);
	cr_assert_arr_eq(b->buf, want, want_len);
}

Test(announce, bencode_primitives)
{
	uint8_t buf[128];
	struct announce_benc b;
	static const char want[] = "d3:agei-42e4:listli0ei9223372036854775807e0:e5:nulle"
	                           "1:\x00"
	                           "e";

	announce_benc_init(&b, buf, sizeof(buf));
	announce_benc_dict(&b);
	announce_benc_cstr(&b, "age");
	announce_benc_int(&b, -42);
	announce_benc_cstr(&b, "list");
	announce_benc_list(&b);
	announce_benc_int(&b, 0);
	announce_benc_int(&b, INT64_MAX);
	announce_benc_str(&b, "", 0);
	announce_benc_end(&b);
	announce_benc_cstr(&b, "nulle");
	announce_benc_str(&b, "\0", 1);
	announce_benc_end(&b);
	assert_benc(&b, want, sizeof(want) - 1);

	/* Overflow sticks and writes nothing past the buffer. */
	announce_benc_init(&b, buf, 5);
	announce_benc_cstr(&b, "abc");
	cr_assert_eq(b.overflow, 0);
	announce_benc_cstr(&b, "x");
	cr_assert_eq(b.overflow, 1);
	announce_benc_end(&b);
	cr_assert_eq(b.len, 5);
}

Test(announce, bencode_failure_and_reply)
{
	uint8_t buf[256];
	struct announce_benc b;
	const uint8_t p4[12] = {127, 0, 0, 1, 0x1a, 0xe1, 10, 0, 0, 2, 0x00, 0x50};
	const uint8_t p6[18] = {[15] = 1, [16] = 0x1a, [17] = 0xe2};
	struct announce_reply rep = {.interval = 30,
	                             .min_interval = 15,
	                             .complete = 1,
	                             .incomplete = 2,
	                             .peers4 = p4,
	                             .npeers4 = 2,
	                             .peers6 = p6,
	                             .npeers6 = 0};
	static const char fail[] = "d14:failure reason11:bad requeste";
	static const char want0[] = "d8:completei1e10:incompletei2e8:intervali30e"
	                            "12:min intervali15e5:peers12:"
	                            "\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x50"
	                            "e";
	static const char want1[] = "d8:completei1e10:incompletei2e8:intervali30e"
	                            "12:min intervali15e5:peers0:6:peers618:"
	                            "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x1a\xe2"
	                            "e";

	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_failure(&b, "bad request");
	assert_benc(&b, fail, sizeof(fail) - 1);

	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_reply(&b, &rep);
	assert_benc(&b, want0, sizeof(want0) - 1);

	rep.npeers4 = 0;
	rep.npeers6 = 1;
	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_reply(&b, &rep);
	assert_benc(&b, want1, sizeof(want1) - 1);
}

Test(announce, bencode_scrape_sorted_and_deduplicated)
{
	uint8_t buf[512];
	struct announce_benc b;
	struct announce_scrape_entry e[3] = {
	    {.info_hash = "bbbbbbbbbbbbbbbbbbbb", .complete = 1, .downloaded = 2, .incomplete = 3},
	    {.info_hash = "aaaaaaaaaaaaaaaaaaaa", .complete = 4, .downloaded = 5, .incomplete = 6},
	    {.info_hash = "bbbbbbbbbbbbbbbbbbbb", .complete = 1, .downloaded = 2, .incomplete = 3},
	};
	static const char want[] =
	    "d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei4e10:downloadedi5e10:incompletei6ee"
	    "20:bbbbbbbbbbbbbbbbbbbbd8:completei1e10:downloadedi2e10:incompletei3eeee";
	static const char empty[] = "d5:filesdee";

	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_scrape(&b, e, 3);
	assert_benc(&b, want, sizeof(want) - 1);
	announce_benc_init(&b, buf, sizeof(buf));
	announce_encode_scrape(&b, e, 0);
	assert_benc(&b, empty, sizeof(empty) - 1);
}

Test(announce, infohash_of_volume)
{
	const uint8_t id[16] = {0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	                        0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff};
	uint8_t msg[18 + 16], h[32], got[20], other[20], id2[16];

	cr_assert_eq(vcrypto_init(), 0);
	/* Independently: libsodium's BLAKE2b-256 of the domain string and the id. */
	memcpy(msg, "p2pvbd-infohash-v1", 18);
	memcpy(msg + 18, id, 16);
	crypto_generichash(h, sizeof(h), msg, sizeof(msg), NULL, 0);
	manifest_infohash(id, got);
	cr_assert_arr_eq(got, h, 20);
	memcpy(id2, id, 16);
	id2[15] ^= 1;
	manifest_infohash(id2, other);
	cr_assert_arr_neq(got, other, 20);
}

/* The tracker tables, with an explicit clock. */

static struct tracker *mk(unsigned max_swarms, unsigned max_peers)
{
	struct tracker_config cfg = {
	    .interval = 10, .max_swarms = max_swarms, .max_peers = max_peers};

	return tracker_new(&cfg);
}

static void mkreq(struct announce_req *r, char swarm, char peer, uint64_t left,
                  enum announce_event ev)
{
	memset(r, 0, sizeof(*r));
	memset(r->info_hash, swarm, 20);
	memset(r->peer_id, peer, 20);
	r->port = (uint16_t)(1000 + peer);
	r->left = left;
	r->event = ev;
	r->numwant = 50;
	r->compact = 1;
}

static const struct tracker_addr v4 = {.family = 4, .ip = {127, 0, 0, 1}};
static const struct tracker_addr v6 = {.family = 6, .ip = {[15] = 1}};

static int announce(struct tracker *t, char swarm, char peer, uint64_t left, enum announce_event ev,
                    uint64_t now, struct announce_reply *rep, const char **why)
{
	static uint8_t p4[ANNOUNCE_NUMWANT_MAX * 6], p6[ANNOUNCE_NUMWANT_MAX * 18];
	struct announce_req r;
	struct tracker_addr a = peer == 'z' ? v6 : v4;

	mkreq(&r, swarm, peer, left, ev);
	a.port = r.port;
	return tracker_announce(t, &r, &a, now, rep, p4, p6, why);
}

Test(announce, tracker_peers_stopped_and_counts)
{
	struct tracker *t = mk(10, 10);
	struct announce_reply rep;
	struct announce_scrape_entry e;
	const char *why = NULL;

	cr_assert_eq(announce(t, 'A', 'a', 100, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	cr_assert_eq(rep.npeers4, 0);
	cr_assert_eq(rep.incomplete, 1);
	cr_assert_eq(rep.interval, 10);
	cr_assert_eq(rep.min_interval, 5);
	cr_assert_eq(announce(t, 'A', 'b', 0, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	cr_assert_eq(rep.complete, 1);
	cr_assert_eq(rep.incomplete, 1);
	cr_assert_eq(rep.npeers4, 1);
	/* b gets a: 127.0.0.1, port 1000 + 'a'. */
	cr_assert_eq(rep.peers4[0], 127);
	cr_assert_eq(rep.peers4[4] << 8 | rep.peers4[5], 1000 + 'a');
	/* An IPv6 peer goes into peers6. */
	cr_assert_eq(announce(t, 'A', 'z', 5, ANNOUNCE_EV_NONE, 1, &rep, &why), 0);
	cr_assert_eq(rep.npeers4, 2);
	cr_assert_eq(rep.npeers6, 0);
	cr_assert_eq(announce(t, 'A', 'a', 0, ANNOUNCE_EV_COMPLETED, 2, &rep, &why), 0);
	cr_assert_eq(rep.npeers6, 1, "a leecher turned seed still gets the leecher z");
	cr_assert_eq(rep.npeers4, 0, "a seed is not sent other seeds");
	cr_assert_eq(rep.complete, 2);
	tracker_scrape_one(t, (const uint8_t *)"AAAAAAAAAAAAAAAAAAAA", &e);
	cr_assert_eq(e.complete, 2);
	cr_assert_eq(e.incomplete, 1);
	cr_assert_eq(e.downloaded, 1);
	/* completed again does not count twice */
	cr_assert_eq(announce(t, 'A', 'a', 0, ANNOUNCE_EV_COMPLETED, 2, &rep, &why), 0);
	tracker_scrape_one(t, (const uint8_t *)"AAAAAAAAAAAAAAAAAAAA", &e);
	cr_assert_eq(e.downloaded, 1);

	cr_assert_eq(announce(t, 'A', 'b', 0, ANNOUNCE_EV_STOPPED, 3, &rep, &why), 0);
	cr_assert_eq(rep.npeers4 + rep.npeers6, 0);
	cr_assert_eq(t->npeer, 2);
	cr_assert_eq(announce(t, 'A', 'a', 0, ANNOUNCE_EV_STOPPED, 3, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 'z', 0, ANNOUNCE_EV_STOPPED, 3, &rep, &why), 0);
	cr_assert_eq(t->nswarm, 0, "the last stopped peer removes the swarm");
	cr_assert_eq(t->npeer, 0);
	tracker_free(t);
}

Test(announce, tracker_caps)
{
	struct tracker *t = mk(2, 2);
	struct announce_reply rep;
	const char *why = NULL;

	cr_assert_eq(announce(t, 'A', 'a', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 'b', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 'c', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), -1);
	cr_assert(strstr(why, "--max-peers") != NULL, "%s", why);
	/* A known peer may still re-announce in a full swarm. */
	cr_assert_eq(announce(t, 'A', 'b', 1, ANNOUNCE_EV_NONE, 1, &rep, &why), 0);
	cr_assert_eq(announce(t, 'B', 'a', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	cr_assert_eq(announce(t, 'C', 'a', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), -1);
	cr_assert(strstr(why, "--max-swarms") != NULL, "%s", why);
	cr_assert_eq(t->nswarm, 2);
	/* A stopped for an unknown swarm creates nothing. */
	cr_assert_eq(announce(t, 'D', 'a', 1, ANNOUNCE_EV_STOPPED, 1, &rep, &why), 0);
	cr_assert_eq(t->nswarm, 2);
	tracker_free(t);
}

Test(announce, tracker_expiry)
{
	struct tracker *t = mk(10, 10);
	struct announce_reply rep;
	const char *why = NULL;
	uint64_t timeout = tracker_peer_timeout(t);

	cr_assert_eq(timeout, 2 * 10 + TRACKER_GRACE_S);
	cr_assert_eq(announce(t, 'A', 'a', 1, ANNOUNCE_EV_STARTED, 100, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 'b', 1, ANNOUNCE_EV_STARTED, 110, &rep, &why), 0);
	cr_assert_eq(announce(t, 'B', 'c', 1, ANNOUNCE_EV_STARTED, 100, &rep, &why), 0);
	cr_assert_eq(tracker_expire(t, 100 + timeout), 0);
	cr_assert_eq(tracker_expire(t, 101 + timeout), 2);
	cr_assert_eq(t->nswarm, 1);
	cr_assert_eq(t->npeer, 1);
	cr_assert_eq(tracker_expire(t, 111 + timeout), 1);
	cr_assert_eq(t->nswarm, 0);
	tracker_free(t);
}

Test(announce, tracker_key_protects_peer_id)
{
	struct tracker *t = mk(10, 10);
	struct announce_reply rep;
	const char *why = NULL;
	uint8_t p4[1200], p6[3600];
	struct announce_req r;
	struct tracker_addr a = v4;

	mkreq(&r, 'A', 'a', 1, ANNOUNCE_EV_STARTED);
	memcpy(r.key, "k1", 2);
	r.key_len = 2;
	cr_assert_eq(tracker_announce(t, &r, &a, 1, &rep, p4, p6, &why), 0);
	r.key[1] = '2';
	cr_assert_eq(tracker_announce(t, &r, &a, 1, &rep, p4, p6, &why), -1);
	cr_assert(strstr(why, "key") != NULL);
	tracker_free(t);
}

Test(announce, tracker_receipts)
{
	struct tracker *t = mk(10, 10);
	struct manifest_receipt rc = {.generation = 1};
	const char *why = NULL;

	for (unsigned i = 0; i < TRACKER_MAX_RECEIPTS_VOL; i++) {
		memcpy(rc.signer, &i, sizeof(i));
		cr_assert_eq(tracker_receipt_add(t, &rc, 5, &why), 0);
	}
	/* The same signer again replaces; a new one is past the per-volume cap. */
	cr_assert_eq(tracker_receipt_add(t, &rc, 6, &why), 0);
	cr_assert_eq(t->nreceipt, TRACKER_MAX_RECEIPTS_VOL);
	rc.signer[31] = 1;
	cr_assert_eq(tracker_receipt_add(t, &rc, 6, &why), -1);
	cr_assert(strstr(why, "too many receipts") != NULL);
	rc.volume_id[0] = 1;
	cr_assert_eq(tracker_receipt_add(t, &rc, 6, &why), 0);
	tracker_free(t);
}

/*
 * event=stopped drops the peer at once (same `now`, long before it would
 * expire): it is no longer handed out, the counts say so, a seed's stop
 * lowers "complete", and the next announce of the same peer_id is a new
 * peer. A stopped under another key is refused and the peer stays.
 */
Test(announce, tracker_stopped_drops_at_once)
{
	struct tracker *t = mk(10, 10);
	struct announce_reply rep;
	struct announce_scrape_entry e;
	const char *why = NULL;
	uint8_t p4[ANNOUNCE_NUMWANT_MAX * 6], p6[ANNOUNCE_NUMWANT_MAX * 18];
	struct announce_req r;
	struct tracker_addr a = v4;

	cr_assert_eq(announce(t, 'A', 'a', 100, ANNOUNCE_EV_STARTED, 50, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 's', 0, ANNOUNCE_EV_STARTED, 50, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 'c', 100, ANNOUNCE_EV_STARTED, 50, &rep, &why), 0);
	cr_assert_eq(t->npeer, 3);

	/* The seed stops: gone from the table and the counts, at the same instant. */
	cr_assert_eq(announce(t, 'A', 's', 0, ANNOUNCE_EV_STOPPED, 50, &rep, &why), 0);
	cr_assert_eq(t->npeer, 2);
	cr_assert_eq(rep.complete, 0);
	cr_assert_eq(rep.incomplete, 2);
	cr_assert_eq(rep.npeers4 + rep.npeers6, 0, "a stopped peer is sent no peers");
	tracker_scrape_one(t, (const uint8_t *)"AAAAAAAAAAAAAAAAAAAA", &e);
	cr_assert_eq(e.complete, 0);
	cr_assert_eq(e.incomplete, 2);
	/* a is handed c only, never the stopped seed. */
	cr_assert_eq(announce(t, 'A', 'a', 100, ANNOUNCE_EV_NONE, 50, &rep, &why), 0);
	cr_assert_eq(rep.npeers4, 1);
	cr_assert_eq(rep.peers4[4] << 8 | rep.peers4[5], 1000 + 'c');
	/* Nothing was left for expiry to do. */
	cr_assert_eq(tracker_expire(t, 50 + tracker_peer_timeout(t)), 0);

	/* Stopping twice, or a peer_id the swarm never saw, changes nothing. */
	cr_assert_eq(announce(t, 'A', 's', 0, ANNOUNCE_EV_STOPPED, 51, &rep, &why), 0);
	cr_assert_eq(announce(t, 'A', 'q', 0, ANNOUNCE_EV_STOPPED, 51, &rep, &why), 0);
	cr_assert_eq(t->npeer, 2);
	cr_assert_eq(t->nswarm, 1);

	/* Coming back after a stop is a new peer (a leecher until it says otherwise). */
	cr_assert_eq(announce(t, 'A', 's', 0, ANNOUNCE_EV_STARTED, 52, &rep, &why), 0);
	cr_assert_eq(t->npeer, 3);
	cr_assert_eq(rep.complete, 1);

	/* A peer registered with a key cannot be stopped by someone without it. */
	mkreq(&r, 'A', 'k', 5, ANNOUNCE_EV_STARTED);
	memcpy(r.key, "key1", 4);
	r.key_len = 4;
	a.port = r.port;
	cr_assert_eq(tracker_announce(t, &r, &a, 53, &rep, p4, p6, &why), 0);
	cr_assert_eq(t->npeer, 4);
	r.event = ANNOUNCE_EV_STOPPED;
	r.key_len = 0;
	cr_assert_eq(tracker_announce(t, &r, &a, 53, &rep, p4, p6, &why), -1);
	cr_assert_eq(t->npeer, 4, "a stopped without the peer's key removed it");
	r.key_len = 4;
	cr_assert_eq(tracker_announce(t, &r, &a, 53, &rep, p4, p6, &why), 0);
	cr_assert_eq(t->npeer, 3);
	tracker_free(t);
}

Test(announce, tracker_iterator_visits_every_swarm_once)
{
	struct tracker *t = mk(100, 10);
	struct announce_reply rep;
	struct tracker_iter it;
	const char *why = NULL;
	int seen[26] = {0}, n = 0;

	cr_assert_null(tracker_first(t, &it), "an empty tracker has swarms");
	cr_assert_null(tracker_next(t, &it));
	for (char c = 'A'; c <= 'Z'; c++)
		cr_assert_eq(announce(t, c, 'a', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	/* A second peer in some swarms: the iterator counts swarms, not peers. */
	cr_assert_eq(announce(t, 'C', 'b', 1, ANNOUNCE_EV_STARTED, 1, &rep, &why), 0);
	for (const struct tracker_swarm *s = tracker_first(t, &it); s != NULL;
	     s = tracker_next(t, &it)) {
		int i = s->info_hash[0] - 'A';

		cr_assert(i >= 0 && i < 26, "a swarm that was never announced");
		seen[i]++;
		n++;
	}
	cr_assert_eq(n, 26);
	for (int i = 0; i < 26; i++)
		cr_assert_eq(seen[i], 1, "swarm %c seen %d times", 'A' + i, seen[i]);
	cr_assert_null(tracker_next(t, &it), "the iterator starts again after its end");
	tracker_free(t);
}
