/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for treply (tracker replies): compact and dictionary peer
 * lists, IPv6 peers, failures, receipts, and malformed replies with the
 * reason each must give.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "treply.h"

static int parse(const char *s, size_t len, struct treply *r, const char **why)
{
	*why = NULL;
	return treply_parse((const uint8_t *)s, len, r, why);
}

#define PARSE(lit, r, why) parse(lit, sizeof(lit) - 1, r, why)

Test(treply, compact_peers_and_intervals)
{
	static const char rep[] = "d8:completei1e10:incompletei2e8:intervali30e12:min intervali10e"
	                          "5:peers12:\x0a\x00\x00\x01\x1a\xe1\x7f\x00\x00\x01\x00\x50"
	                          "e";
	struct treply r;
	const char *why;

	cr_assert_eq(PARSE(rep, &r, &why), 0, "%s", why);
	cr_assert_eq(r.interval, 30);
	cr_assert_eq(r.min_interval, 10);
	cr_assert_null(r.failure);
	cr_assert_eq(r.npeers, 2);
	cr_assert_eq(r.peers[0].family, 4);
	cr_assert_arr_eq(r.peers[0].addr, "\x0a\x00\x00\x01", 4);
	cr_assert_eq(r.peers[0].port, 6881);
	cr_assert_arr_eq(r.peers[1].addr, "\x7f\x00\x00\x01", 4);
	cr_assert_eq(r.peers[1].port, 80);
}

Test(treply, peers6)
{
	static const char rep[] = "d8:intervali5e5:peers0:6:peers618:"
	                          "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01\x1b\x59"
	                          "e";
	struct treply r;
	const char *why;

	cr_assert_eq(PARSE(rep, &r, &why), 0, "%s", why);
	cr_assert_eq(r.npeers, 1);
	cr_assert_eq(r.peers[0].family, 6);
	cr_assert_eq(r.peers[0].addr[0], 0x20);
	cr_assert_eq(r.peers[0].addr[15], 0x01);
	cr_assert_eq(r.peers[0].port, 7001);
}

Test(treply, dictionary_peers)
{
	static const char rep[] = "d8:intervali60e5:peersld2:ip8:10.0.0.27:peer id20:"
	                          "abcdefghijklmnopqrst4:porti7002eed2:ip9:some.host4:porti1eeee";
	struct treply r;
	const char *why;

	cr_assert_eq(PARSE(rep, &r, &why), 0, "%s", why);
	/* The host name is skipped: only numeric IPv4 addresses are used. */
	cr_assert_eq(r.npeers, 1);
	cr_assert_arr_eq(r.peers[0].addr, "\x0a\x00\x00\x02", 4);
	cr_assert_eq(r.peers[0].port, 7002);
}

Test(treply, failure_reason)
{
	static const char rep[] = "d14:failure reason17:unregistered hashe";
	struct treply r;
	const char *why;

	cr_assert_eq(PARSE(rep, &r, &why), 0, "%s", why);
	cr_assert_not_null(r.failure);
	cr_assert_eq(r.failure_len, 17);
	cr_assert_eq(memcmp(r.failure, "unregistered hash", 17), 0);
	cr_assert_eq(r.npeers, 0);
	cr_assert_eq(r.interval, -1);
}

Test(treply, receipts)
{
	char rep[64 + 336];
	struct treply r;
	const char *why;
	int n = snprintf(rep, sizeof(rep), "d8:receipts336:");

	memset(rep + n, 0xab, 336);
	rep[n + 336] = 'e';
	cr_assert_eq(parse(rep, (size_t)n + 337, &r, &why), 0, "%s", why);
	cr_assert_eq(r.receipts_len, 336);
	cr_assert_eq(r.receipts, (const uint8_t *)rep + n);
}

Test(treply, too_many_peers_are_capped)
{
	static char rep[16 + 6 * (TREPLY_MAX_PEERS + 10) + 2];
	struct treply r;
	const char *why;
	size_t body = 6 * (TREPLY_MAX_PEERS + 10);
	int n = snprintf(rep, sizeof(rep), "d5:peers%zu:", body);

	for (size_t i = 0; i < body; i += 6) {
		memcpy(rep + n + i, "\x0a\x00\x00\x01", 4);
		rep[n + i + 4] = 0x1b;
		rep[n + i + 5] = (char)(i / 6 + 1);
	}
	rep[n + body] = 'e';
	cr_assert_eq(parse(rep, n + body + 1, &r, &why), 0, "%s", why);
	cr_assert_eq(r.npeers, TREPLY_MAX_PEERS);
}

/* Malformed replies and the reason each must give. */
static void bad(const char *s, size_t len, const char *reason)
{
	struct treply r;
	const char *why;

	cr_assert_eq(parse(s, len, &r, &why), -1, "accepted: %.*s", (int)len, s);
	cr_assert_not_null(why);
	cr_assert(strstr(why, reason) != NULL, "'%s' does not mention '%s' (input %.*s)", why,
	          reason, (int)len, s);
}

#define BAD(lit, reason) bad(lit, sizeof(lit) - 1, reason)

Test(treply, malformed)
{
	BAD("", "not a bencoded dictionary");
	BAD("l4:spame", "not a bencoded dictionary");
	BAD("<html>", "not a bencoded dictionary");
	BAD("d8:intervali30e", "unterminated dictionary");
	BAD("d8:intervali30ee ", "bytes after");
	BAD("d8:intervali030ee", "leading zero");
	BAD("d8:intervali-0ee", "malformed integer");
	BAD("d8:intervalie", "malformed integer");
	BAD("d8:intervali30", "unterminated integer");
	BAD("d8:intervali99999999999999999999ee", "too large");
	BAD("d8:intervali-5ee", "negative interval");
	BAD("d5:peers7:1234567e", "bad length");
	BAD("d6:peers66:123456e", "bad length");
	BAD("d5:peers6:\x0a\x00\x00\x01\x00\x00"
	    "e",
	    "port 0");
	BAD("d5:peers99:abce", "longer than the reply");
	BAD("d5:peers999999999999999999999:e", "longer than the reply");
	BAD("d05:peers0:e", "leading zero");
	BAD("d5peers0:e", "malformed string length");
	BAD("di1e1:xe", "expected a string");
	BAD("d1:xlllllllllllllllllllllllllllllllleeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "nested");
	BAD("d1:xl", "unterminated list");
	BAD("d5:peersld4:porti5eee", "without ip");
	BAD("d5:peersld2:ip8:10.0.0.24:porti70000eeee", "bad port");
	BAD("d5:peersli5ee", "not a dictionary");
	BAD("d14:failure reasoni3ee", "expected a string");
}
