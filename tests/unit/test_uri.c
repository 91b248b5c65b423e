/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for uri: round trips, IPv6 peers, percent-encoded trackers and
 * many malformed URIs, each with the reason it must give.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uri.h"

#define ID     "00112233445566778899aabbccddeeff"
#define KEY    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define SEC    "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff e0e1e2e3e4e5e6e7e8e9eaebecedeeef" /* a space */
#define SECRET "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeffe0e1e2e3e4e5e6e7e8e9eaebecedeeef"
#define BASE   "p2pvbd://" ID "?key=" KEY "&secret=" SECRET

static int parse(const char *s, struct uri *u, char *err, size_t errlen)
{
	return uri_parse(s, strlen(s), u, err, errlen);
}

/* Two parsed URIs are equal field by field (parse zeroes unused bytes). */
static void assert_uri_eq(const struct uri *a, const struct uri *b)
{
	cr_assert_arr_eq(a->volume_id, b->volume_id, 16);
	cr_assert_arr_eq(a->key, b->key, 32);
	cr_assert_arr_eq(a->secret, b->secret, 32);
	cr_assert_eq(a->npeers, b->npeers);
	cr_assert_eq(a->ntrackers, b->ntrackers);
	for (int i = 0; i < a->npeers; i++) {
		cr_assert_str_eq(a->peer[i].host, b->peer[i].host);
		cr_assert_eq(a->peer[i].port, b->peer[i].port);
	}
	for (int i = 0; i < a->ntrackers; i++)
		cr_assert_str_eq(a->tracker[i], b->tracker[i]);
}

Test(uri, minimal_and_fields)
{
	struct uri u;
	char err[128];

	cr_assert_eq(parse(BASE, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.volume_id[0], 0x00);
	cr_assert_eq(u.volume_id[15], 0xff);
	cr_assert_eq(u.key[0], 0x00);
	cr_assert_eq(u.key[31], 0x1f);
	cr_assert_eq(u.secret[0], 0xf0);
	cr_assert_eq(u.secret[31], 0xef);
	cr_assert_eq(u.npeers, 0);
	cr_assert_eq(u.ntrackers, 0);
}

Test(uri, round_trip_full)
{
	static const char s[] =
	    BASE "&peer=10.0.0.1:7000&peer=[fe80::1]:65535&peer=host-a.example:1"
	         "&tracker=http://t.example:6969/announce%3Fpasskey%3Dab%26c";
	struct uri u, v;
	char err[128], out[URI_MAX_LEN + 1];
	int n;

	cr_assert_eq(parse(s, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.npeers, 3);
	cr_assert_str_eq(u.peer[0].host, "10.0.0.1");
	cr_assert_eq(u.peer[0].port, 7000);
	cr_assert_str_eq(u.peer[1].host, "fe80::1");
	cr_assert_eq(u.peer[1].port, 65535);
	cr_assert_str_eq(u.peer[2].host, "host-a.example");
	cr_assert_eq(u.peer[2].port, 1);
	cr_assert_eq(u.ntrackers, 1);
	cr_assert_str_eq(u.tracker[0], "http://t.example:6969/announce?passkey=ab&c");

	n = uri_format(&u, out, sizeof(out));
	cr_assert_eq(n, (int)strlen(s));
	cr_assert_str_eq(out, s);
	cr_assert_eq(parse(out, &v, err, sizeof(err)), 0, "%s", err);
	assert_uri_eq(&u, &v);
}

Test(uri, parameters_any_order_and_upper_case_hex)
{
	static const char s[] =
	    "p2pvbd://00112233445566778899AABBCCDDEEFF?peer=h:9&secret=" SECRET "&key=" KEY;
	struct uri u, v;
	char err[128], out[URI_MAX_LEN + 1];

	cr_assert_eq(parse(s, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(parse(BASE "&peer=h:9", &v, err, sizeof(err)), 0, "%s", err);
	assert_uri_eq(&u, &v);
	/* Formatting is canonical: fixed order, lower-case hex. */
	cr_assert_gt(uri_format(&u, out, sizeof(out)), 0);
	cr_assert_str_eq(out, BASE "&peer=h:9");
}

Test(uri, not_nul_terminated_input)
{
	char buf[sizeof(BASE) + 8];
	struct uri u;
	char err[128];

	memcpy(buf, BASE, strlen(BASE));
	memset(buf + strlen(BASE), 'x', 8); /* garbage after len, no NUL anywhere */
	cr_assert_eq(uri_parse(buf, strlen(BASE), &u, err, sizeof(err)), 0, "%s", err);
}

Test(uri, format_cap)
{
	struct uri u;
	char out[URI_MAX_LEN + 1], err[128];
	int n;

	cr_assert_eq(parse(BASE "&peer=[::1]:80", &u, err, sizeof(err)), 0);
	n = uri_format(&u, out, sizeof(out));
	cr_assert_eq(n, (int)strlen(BASE "&peer=[::1]:80"));
	cr_assert_eq(uri_format(&u, out, (size_t)n + 1), n);
	cr_assert_eq(uri_format(&u, out, (size_t)n), -1);
	cr_assert_eq(uri_format(&u, out, 1), -1);
	cr_assert_eq(uri_format(&u, out, 0), -1);
}

Test(uri, format_refuses_what_parse_refuses)
{
	struct uri u;
	char out[URI_MAX_LEN * 4], err[128];

	cr_assert_eq(parse(BASE, &u, err, sizeof(err)), 0);
	u.npeers = 1;
	strcpy(u.peer[0].host, "bad host");
	u.peer[0].port = 1;
	cr_assert_eq(uri_format(&u, out, sizeof(out)), -1);
	strcpy(u.peer[0].host, "ok");
	u.peer[0].port = 0;
	cr_assert_eq(uri_format(&u, out, sizeof(out)), -1);
	u.peer[0].port = 1;
	cr_assert_gt(uri_format(&u, out, sizeof(out)), 0);
	u.npeers = URI_MAX_PEERS + 1;
	cr_assert_eq(uri_format(&u, out, sizeof(out)), -1);
	u.npeers = 0;
	u.ntrackers = 1;
	strcpy(u.tracker[0], "http://a b");
	cr_assert_eq(uri_format(&u, out, sizeof(out)), -1);
	u.tracker[0][0] = '\0';
	cr_assert_eq(uri_format(&u, out, sizeof(out)), -1);

	/* Sixteen long trackers encode beyond URI_MAX_LEN: refused, since parse would refuse. */
	u.ntrackers = URI_MAX_PEERS;
	for (int i = 0; i < URI_MAX_PEERS; i++) {
		memset(u.tracker[i], 'a', 400);
		u.tracker[i][400] = '\0';
	}
	cr_assert_eq(uri_format(&u, out, sizeof(out)), -1);
}

Test(uri, hostport)
{
	struct uri_peer p;

	cr_assert_eq(uri_parse_hostport("a:1", 3, &p), 0);
	cr_assert_str_eq(p.host, "a");
	cr_assert_eq(p.port, 1);
	cr_assert_eq(uri_parse_hostport("[::ffff:1.2.3.4]:443", 20, &p), 0);
	cr_assert_str_eq(p.host, "::ffff:1.2.3.4");
	cr_assert_eq(p.port, 443);
	cr_assert_eq(uri_parse_hostport("192.168.1.1:65535", 17, &p), 0);

	static const char *bad[] = {
	    "a",
	    ":1",
	    "a:",
	    "a:0",
	    "a:65536",
	    "a:99999",
	    "a:123456",
	    "a:-1",
	    "a:+1",
	    "a:1 ",
	    "a:1x",
	    "::1:80",
	    "fe80::1:80",
	    "[::1]",
	    "[::1]80",
	    "[::1]:",
	    "[]:80",
	    "[zz]:80",
	    "[fe80::1%eth0]:80",
	    "[::1:80",
	    "-a:1",
	    "a-:1",
	    "a..b:1",
	    ".a:1",
	    "a.:1",
	    "a_b:1",
	    "a b:1",
	    "[1.2.3.4]:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(uri_parse_hostport(bad[i], strlen(bad[i]), &p), -1, "'%s'", bad[i]);
	cr_assert_eq(uri_parse_hostport("a:1\0", 4, &p), -1, "NUL");
	cr_assert_eq(uri_parse_hostport("", 0, &p), -1);

	/* 63-character labels are fine, 64 are not; names up to 255 bytes fit the struct. */
	char name[300];
	memset(name, 'x', 63);
	strcpy(name + 63, ":5");
	cr_assert_eq(uri_parse_hostport(name, strlen(name), &p), 0);
	memset(name, 'x', 64);
	strcpy(name + 64, ":5");
	cr_assert_eq(uri_parse_hostport(name, strlen(name), &p), -1);
	for (int i = 0; i < 256; i++)
		name[i] = (i % 2) ? '.' : 'y';
	name[255] = 'y'; /* 256 characters: one too many */
	strcpy(name + 256, ":5");
	cr_assert_eq(uri_parse_hostport(name, strlen(name), &p), -1);
	strcpy(name + 255, ":5");
	cr_assert_eq(uri_parse_hostport(name, strlen(name), &p), 0);
	cr_assert_eq(strlen(p.host), 255);
}

Test(uri, malformed)
{
	static const struct {
		const char *uri;
		const char *why; /* expected substring of the error */
	} cases[] = {
	    {"", "does not start with"},
	    {"http://" ID "?key=" KEY "&secret=" SECRET, "does not start with"},
	    {"p2pvbd:/" ID "?key=" KEY, "does not start with"},
	    {"p2pvbd://" ID, "no parameters"},
	    {"p2pvbd://" ID "?", "empty parameter"},
	    {"p2pvbd://" ID "x?key=" KEY "&secret=" SECRET, "volume id"},
	    {"p2pvbd://0011?key=" KEY "&secret=" SECRET, "volume id"},
	    {"p2pvbd://g0112233445566778899aabbccddeeff?key=" KEY "&secret=" SECRET, "volume id"},
	    {"p2pvbd://" ID "/?key=" KEY "&secret=" SECRET, "volume id"},
	    {"p2pvbd://" ID "?secret=" SECRET, "no key="},
	    {"p2pvbd://" ID "?key=" KEY, "no secret="},
	    {BASE "&key=" KEY, "key= given twice"},
	    {BASE "&secret=" SECRET, "secret= given twice"},
	    {"p2pvbd://" ID "?key=" KEY "0&secret=" SECRET, "key= must be"},
	    {"p2pvbd://" ID "?key=&secret=" SECRET, "key= must be"},
	    {"p2pvbd://" ID "?key=" KEY "&secret=" SEC, "secret= must be"},
	    {BASE "&", "empty parameter"},
	    {BASE "&&peer=a:1", "empty parameter"},
	    {BASE "&peer", "has no value"},
	    {BASE "&color=blue", "unknown URI parameter 'color'"},
	    {BASE "&Key=" KEY, "unknown URI parameter 'Key'"},
	    {BASE "&=x", "unknown URI parameter ''"},
	    {BASE "&peer=a", "peer="},
	    {BASE "&peer=a:0", "peer="},
	    {BASE "&peer=a:65536", "peer="},
	    {BASE "&peer=fe80::1:80", "peer="},
	    {BASE "&peer=", "peer="},
	    {BASE "&tracker=", "empty tracker="},
	    {BASE "&tracker=http://t/a?b", "must be percent-encoded"},
	    {BASE "&tracker=http://t/a=b", "must be percent-encoded"},
	    {BASE "&tracker=http://t/a#b", "must be percent-encoded"},
	    {BASE "&tracker=http://t/a b", "must be percent-encoded"},
	    {BASE "&tracker=http://t/%", "bad percent escape"},
	    {BASE "&tracker=http://t/%4", "bad percent escape"},
	    {BASE "&tracker=http://t/%zz", "bad percent escape"},
	    {BASE "&tracker=http://t/%00", "encodes a control"},
	    {BASE "&tracker=http://t/%20", "encodes a control"},
	    {BASE "&tracker=http://t/%C3%A9", "encodes a control"},
	    {BASE "#frag", "secret= must be"},
	};
	struct uri u;
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		cr_assert_eq(parse(cases[i].uri, &u, err, sizeof(err)), -1, "accepted: %s",
		             cases[i].uri);
		cr_assert_not_null(strstr(err, cases[i].why), "'%s': error '%s', expected '%s'",
		                   cases[i].uri, err, cases[i].why);
	}
}

Test(uri, embedded_nul_and_length)
{
	struct uri u;
	char err[128], *big;
	char s[sizeof(BASE) + 16];
	size_t n = strlen(BASE);

	memcpy(s, BASE, n);
	memcpy(s + n, "&peer=a:1", 9);
	s[n + 7] = '\0'; /* "&peer=a\0:1" */
	cr_assert_eq(uri_parse(s, n + 9, &u, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "NUL"), "%s", err);

	/* Exactly URI_MAX_LEN is allowed (a tracker padding it out), one more is not. */
	big = malloc(URI_MAX_LEN + 2);
	cr_assert_not_null(big);
	strcpy(big, BASE);
	for (size_t len = strlen(big); len < URI_MAX_LEN;) {
		size_t room = URI_MAX_LEN - len, t = room - 9 > 511 ? 511 : room - 9;

		cr_assert_gt(room, 9);
		strcat(big, "&tracker=");
		memset(big + len + 9, 'a', t);
		big[len + 9 + t] = '\0';
		len = strlen(big);
	}
	cr_assert_eq(strlen(big), URI_MAX_LEN);
	cr_assert_eq(parse(big, &u, err, sizeof(err)), 0, "%s", err);
	strcat(big, "a");
	cr_assert_eq(parse(big, &u, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "longer than"), "%s", err);
	free(big);
}

Test(uri, too_many_peers_and_trackers)
{
	char s[URI_MAX_LEN + 1], err[128];
	struct uri u;

	strcpy(s, BASE);
	for (int i = 0; i < URI_MAX_PEERS; i++)
		sprintf(s + strlen(s), "&peer=h%d:%d", i, 1000 + i);
	cr_assert_eq(parse(s, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.npeers, URI_MAX_PEERS);
	cr_assert_str_eq(u.peer[15].host, "h15");
	cr_assert_eq(u.peer[15].port, 1015);
	strcat(s, "&peer=x:1");
	cr_assert_eq(parse(s, &u, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "more than 16 peer="), "%s", err);

	strcpy(s, BASE);
	for (int i = 0; i < URI_MAX_PEERS; i++)
		sprintf(s + strlen(s), "&tracker=http://t%d/", i);
	cr_assert_eq(parse(s, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(u.ntrackers, URI_MAX_PEERS);
	strcat(s, "&tracker=http://x/");
	cr_assert_eq(parse(s, &u, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "more than 16 tracker="), "%s", err);
}

Test(uri, tracker_length_limit)
{
	char s[URI_MAX_LEN + 1], err[128];
	struct uri u;
	size_t n;

	strcpy(s, BASE "&tracker=");
	n = strlen(s);
	memset(s + n, 'a', 511);
	s[n + 511] = '\0';
	cr_assert_eq(parse(s, &u, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(strlen(u.tracker[0]), 511);
	strcat(s, "a");
	cr_assert_eq(parse(s, &u, err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "longer than 511"), "%s", err);
}

Test(uri, err_may_be_null_or_small)
{
	struct uri u;
	char err[4];

	cr_assert_eq(parse("nope", &u, NULL, 0), -1);
	cr_assert_eq(parse("nope", &u, err, sizeof(err)), -1);
	cr_assert_eq(strlen(err), 3);
}
