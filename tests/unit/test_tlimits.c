/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of the tracker's admission rules (DESIGN.md rule 9): the
 * p2pvbd announce key (parsing, its derivation from the join secret), the
 * caps per source address on swarms created and peers per swarm, and a
 * p2pvbd volume's swarm, which admits only members and hands each only the
 * peers with the same key.
 */
#include <criterion/criterion.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "announce.h"
#include "manifest.h"
#include "tclient.h"
#include "tracker.h"
#include "util.h"
#include "vcrypto.h"

static const uint8_t vol[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                                0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};

static void init(void)
{
	cr_assert_eq(vcrypto_init(), 0);
	log_init("test", LOG_LEVEL_ERROR);
}

Test(tlimits, announce_key_is_volume_then_token_from_the_secret, .init = init)
{
	uint8_t secret[32], msg[18 + 32 + 16], h[32];
	char key[TCLIENT_KEY_HEX + 1], want[65], key2[TCLIENT_KEY_HEX + 1];

	for (int i = 0; i < 32; i++)
		secret[i] = (uint8_t)(0xa0 + i);
	/* Independently, with libsodium: BLAKE2b-256("p2pvbd-announce-v1" || secret || id). */
	memcpy(msg, "p2pvbd-announce-v1", 18);
	memcpy(msg + 18, secret, 32);
	memcpy(msg + 50, vol, 16);
	crypto_generichash(h, sizeof(h), msg, sizeof(msg), NULL, 0);
	hex_encode(vol, 16, want);
	hex_encode(h, 16, want + 32);
	tclient_announce_key(vol, secret, key);
	cr_assert_str_eq(key, want);
	cr_assert_eq(strlen(key), 64);
	/* Another secret, another token; the same volume. */
	secret[0] ^= 1;
	tclient_announce_key(vol, secret, key2);
	cr_assert_eq(memcmp(key, key2, 32), 0);
	cr_assert_neq(memcmp(key + 32, key2 + 32, 32), 0);
}

static int parse(const char *q, struct announce_req *r, char *err)
{
	return announce_parse(q, strlen(q), r, err, 128);
}

#define BASE                                                                                       \
	"info_hash=%00%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13"                   \
	"&peer_id=-XX0001-abcdefghijkl&port=1&left=0"

Test(tlimits, parse_p2pvbd_key, .init = init)
{
	struct announce_req r;
	char err[128];
	const char *k64 = "101112131415161718191a1b1c1d1e1f"
	                  "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";

	char q[512];

	snprintf(q, sizeof(q), "%s&key=%s", BASE, k64);
	cr_assert_eq(parse(q, &r, err), 0, "%s", err);
	cr_assert_eq(r.p2pvbd, 1);
	cr_assert_eq(r.key_len, 32);
	cr_assert_arr_eq(r.p2pvbd_volume, vol, 16);
	cr_assert_eq(r.p2pvbd_token[0], 0xa0);
	cr_assert_eq(r.p2pvbd_token[15], 0xaf);
	/* Upper case hex is the same key. */
	snprintf(q, sizeof(q),
	         "%s&key=101112131415161718191A1B1C1D1E1F"
	         "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF",
	         BASE);
	cr_assert_eq(parse(q, &r, err), 0, "%s", err);
	cr_assert_eq(r.p2pvbd, 1);
	/* An ordinary key: short, kept as sent. */
	cr_assert_eq(parse(BASE "&key=0badcafe", &r, err), 0, "%s", err);
	cr_assert_eq(r.p2pvbd, 0);
	cr_assert_eq(r.key_len, 8);
	/* 32 hex digits: an ordinary key too. */
	cr_assert_eq(parse(BASE "&key=101112131415161718191a1b1c1d1e1f", &r, err), 0);
	cr_assert_eq(r.p2pvbd, 0);
	/* 64 bytes that are not all hex, 63 and 65 digits: too long, refused. */
	snprintf(q, sizeof(q), "%s&key=%.63sg", BASE, k64);
	cr_assert_eq(parse(q, &r, err), -1);
	cr_assert(strstr(err, "key too long") != NULL, "%s", err);
	snprintf(q, sizeof(q), "%s&key=%.63s", BASE, k64);
	cr_assert_eq(parse(q, &r, err), -1);
	snprintf(q, sizeof(q), "%s&key=%s0", BASE, k64);
	cr_assert_eq(parse(q, &r, err), -1);
	/* Percent-encoded hex digits decode to the same key. */
	snprintf(q, sizeof(q), "%s&key=%%31%.63s", BASE, k64 + 1);
	cr_assert_eq(parse(q, &r, err), 0, "%s", err);
	cr_assert_eq(r.p2pvbd, 1);
}

/* ---- The tables ------------------------------------------------------------ */

static struct tracker *mk(unsigned swarms_per_addr, unsigned peers_per_addr)
{
	struct tracker_config cfg = {.interval = 10,
	                             .max_swarms = 100,
	                             .max_peers = 100,
	                             .max_swarms_per_addr = swarms_per_addr,
	                             .max_peers_per_addr = peers_per_addr};

	return tracker_new(&cfg);
}

static struct tracker_addr addr(uint8_t last)
{
	struct tracker_addr a = {.family = 4, .ip = {127, 0, 0, last}};

	return a;
}

/* An announce for swarm byte `swarm` from peer byte `peer`, its connection from 127.0.0.src. */
static int ann(struct tracker *t, uint8_t swarm, uint8_t peer, uint8_t src,
               struct announce_reply *rep, const char **why)
{
	static uint8_t p4[ANNOUNCE_NUMWANT_MAX * 6], p6[ANNOUNCE_NUMWANT_MAX * 18];
	struct announce_req r;
	struct tracker_addr a = addr(src);

	memset(&r, 0, sizeof(r));
	memset(r.info_hash, swarm, 20);
	memset(r.peer_id, peer, 20);
	r.port = (uint16_t)(1000 + peer);
	r.left = 1;
	r.numwant = 50;
	r.compact = 1;
	a.port = r.port;
	return tracker_announce_src(t, &r, &a, &a, 1, rep, p4, p6, why);
}

Test(tlimits, swarms_per_address, .init = init)
{
	struct tracker *t = mk(3, 0);
	struct announce_reply rep;
	const char *why = NULL;

	for (uint8_t i = 0; i < 3; i++)
		cr_assert_eq(ann(t, 'a' + i, 'p', 1, &rep, &why), 0);
	cr_assert_eq(ann(t, 'x', 'p', 1, &rep, &why), -1);
	cr_assert(strstr(why, "--max-swarms-per-address") != NULL, "%s", why);
	cr_assert_eq(t->nswarm, 3);
	/* Another address still creates swarms; address 1 joins existing ones. */
	cr_assert_eq(ann(t, 'x', 'q', 2, &rep, &why), 0);
	cr_assert_eq(ann(t, 'x', 'p', 1, &rep, &why), 0);
	/* When a swarm it created goes, the address may create one again. */
	cr_assert_eq(tracker_expire(t, 1 + tracker_peer_timeout(t) + 1), 5);
	cr_assert_eq(t->nswarm, 0);
	cr_assert_eq(ann(t, 'y', 'p', 1, &rep, &why), 0);
	tracker_free(t);
}

Test(tlimits, peers_per_address_in_a_swarm, .init = init)
{
	struct tracker *t = mk(0, 4);
	struct announce_reply rep;
	const char *why = NULL;

	for (uint8_t i = 0; i < 4; i++)
		cr_assert_eq(ann(t, 'a', 'A' + i, 1, &rep, &why), 0);
	cr_assert_eq(ann(t, 'a', 'z', 1, &rep, &why), -1);
	cr_assert(strstr(why, "--max-peers-per-address") != NULL, "%s", why);
	/* Known peers re-announce; another swarm and another address are not affected. */
	cr_assert_eq(ann(t, 'a', 'A', 1, &rep, &why), 0);
	cr_assert_eq(ann(t, 'b', 'z', 1, &rep, &why), 0);
	cr_assert_eq(ann(t, 'a', 'z', 2, &rep, &why), 0);
	cr_assert_eq(rep.npeers4, 4, "the other address sees the 4 peers");
	cr_assert_eq(tracker_find(t, (const uint8_t *)"aaaaaaaaaaaaaaaaaaaa")->npeer, 5);
	tracker_free(t);
}

/* An announce to the swarm of `vol`, with a p2pvbd key of token byte tok (0: no key). */
static int vann(struct tracker *t, uint8_t tok, uint8_t peer, uint8_t src, enum announce_event ev,
                struct announce_reply *rep, uint8_t *p4, const char **why)
{
	static uint8_t p6[ANNOUNCE_NUMWANT_MAX * 18];
	struct announce_req r;
	struct tracker_addr a = addr(src);

	memset(&r, 0, sizeof(r));
	manifest_infohash(vol, r.info_hash);
	memset(r.peer_id, peer, 20);
	r.port = (uint16_t)(1000 + peer);
	r.left = 1;
	r.numwant = 50;
	r.compact = 1;
	r.event = ev;
	if (tok) {
		r.p2pvbd = 1;
		memcpy(r.p2pvbd_volume, vol, 16);
		memset(r.p2pvbd_token, tok, 16);
		memcpy(r.key, vol, 16);
		memset(r.key + 16, tok, 16);
		r.key_len = 32;
	}
	a.port = r.port;
	return tracker_announce_src(t, &r, &a, &a, 1, rep, p4, p6, why);
}

/* The ports of the IPv4 peers in a reply, as a bit set over peer bytes (port - 1000). */
static uint64_t ports_of(const struct announce_reply *rep, const uint8_t *p4)
{
	uint64_t set = 0;

	for (size_t i = 0; i < rep->npeers4; i++)
		set |= 1ull << ((p4[6 * i + 4] << 8 | p4[6 * i + 5]) - 1000 - 'A');
	return set;
}

Test(tlimits, p2pvbd_swarm_admits_members_only, .init = init)
{
	struct tracker *t = mk(0, 0);
	struct announce_reply rep;
	uint8_t p4[ANNOUNCE_NUMWANT_MAX * 6];
	const char *why = NULL;
	struct announce_req r;
	uint8_t ih[20];

	/* Junk peers without the key arrive first: they sit in an ordinary swarm. */
	cr_assert_eq(vann(t, 0, 'J', 9, ANNOUNCE_EV_STARTED, &rep, p4, &why), 0);
	cr_assert_eq(vann(t, 0, 'K', 9, ANNOUNCE_EV_STARTED, &rep, p4, &why), 0);
	manifest_infohash(vol, ih);
	cr_assert_eq(tracker_find(t, ih)->npeer, 2);
	/* The first member seals the swarm: the junk goes, and the member gets none of it. */
	cr_assert_eq(vann(t, 7, 'A', 1, ANNOUNCE_EV_STARTED, &rep, p4, &why), 0, "%s", why);
	cr_assert_eq(tracker_find(t, ih)->p2pvbd, 1);
	cr_assert_eq(tracker_find(t, ih)->npeer, 1);
	cr_assert_eq(rep.npeers4, 0);
	/* Without the key: refused, also for stopped, and nothing is added. */
	cr_assert_eq(vann(t, 0, 'J', 9, ANNOUNCE_EV_NONE, &rep, p4, &why), -1);
	cr_assert(strstr(why, "p2pvbd volume") != NULL, "%s", why);
	cr_assert_eq(vann(t, 0, 'J', 9, ANNOUNCE_EV_STOPPED, &rep, p4, &why), -1);
	/* With the volume's id but another token (no join secret): admitted, yet kept apart. */
	cr_assert_eq(vann(t, 8, 'X', 9, ANNOUNCE_EV_STARTED, &rep, p4, &why), 0);
	cr_assert_eq(rep.npeers4, 0, "a non-member was handed a member");
	/* A second member sees the first one only. */
	cr_assert_eq(vann(t, 7, 'B', 2, ANNOUNCE_EV_STARTED, &rep, p4, &why), 0);
	cr_assert_eq(ports_of(&rep, p4), 1ull << 0);
	cr_assert_eq(vann(t, 7, 'A', 1, ANNOUNCE_EV_NONE, &rep, p4, &why), 0);
	cr_assert_eq(ports_of(&rep, p4), 1ull << 1);
	/* A non-member cannot take over a member's peer_id. */
	cr_assert_eq(vann(t, 8, 'A', 9, ANNOUNCE_EV_STOPPED, &rep, p4, &why), -1);
	cr_assert_eq(tracker_find(t, ih)->npeer, 3);
	/* A key of the p2pvbd form for another volume is not a member's key. */
	memset(&r, 0, sizeof(r));
	memcpy(r.info_hash, ih, 20);
	r.p2pvbd = 1;
	memset(r.p2pvbd_volume, 0x55, 16);
	cr_assert_eq(tracker_is_p2pvbd(&r), 0);
	memcpy(r.p2pvbd_volume, vol, 16);
	cr_assert_eq(tracker_is_p2pvbd(&r), 1);
	tracker_free(t);
}

Test(tlimits, ordinary_swarm_is_not_affected_by_keys, .init = init)
{
	struct tracker *t = mk(0, 0);
	struct announce_reply rep;
	const char *why = NULL;
	static uint8_t p4[ANNOUNCE_NUMWANT_MAX * 6], p6[ANNOUNCE_NUMWANT_MAX * 18];
	struct announce_req r;
	struct tracker_addr a = addr(1);

	/* A p2pvbd-form key whose volume does not hash to this info_hash changes nothing. */
	cr_assert_eq(ann(t, 'a', 'A', 1, &rep, &why), 0);
	memset(&r, 0, sizeof(r));
	memset(r.info_hash, 'a', 20);
	memset(r.peer_id, 'B', 20);
	r.port = 1000 + 'B';
	r.left = 1;
	r.numwant = 50;
	r.p2pvbd = 1;
	memcpy(r.p2pvbd_volume, vol, 16);
	r.key_len = 32;
	cr_assert_eq(tracker_announce_src(t, &r, &a, &a, 1, &rep, p4, p6, &why), 0);
	cr_assert_eq(tracker_find(t, (const uint8_t *)"aaaaaaaaaaaaaaaaaaaa")->p2pvbd, 0);
	cr_assert_eq(rep.npeers4, 1);
	cr_assert_eq(ann(t, 'a', 'C', 1, &rep, &why), 0);
	cr_assert_eq(rep.npeers4, 2);
	tracker_free(t);
}
