/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for parse: the one parser of each command-line syntax. Every
 * edge the style guide names (" 5", "+5", ":0", "10Mbit") and the overflows.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "parse.h"

#define NOCHANGE 0xdeadbeefull

static void size_ok(const char *s, uint64_t want)
{
	uint64_t v = NOCHANGE;

	cr_assert_eq(parse_size(s, &v), 0, "parse_size(\"%s\") failed", s);
	cr_assert_eq(v, want, "parse_size(\"%s\") = %llu, want %llu", s, (unsigned long long)v,
	             (unsigned long long)want);
}

static void size_bad(const char *s)
{
	uint64_t v = NOCHANGE;

	cr_assert_eq(parse_size(s, &v), -1, "parse_size(\"%s\") accepted", s);
	cr_assert_eq(v, NOCHANGE, "parse_size(\"%s\") wrote its output on failure", s);
}

static void rate_ok(const char *s, uint64_t want)
{
	uint64_t v = NOCHANGE;

	cr_assert_eq(parse_rate(s, &v), 0, "parse_rate(\"%s\") failed", s);
	cr_assert_eq(v, want, "parse_rate(\"%s\") = %llu, want %llu", s, (unsigned long long)v,
	             (unsigned long long)want);
}

static void rate_bad(const char *s)
{
	uint64_t v = NOCHANGE;

	cr_assert_eq(parse_rate(s, &v), -1, "parse_rate(\"%s\") accepted", s);
	cr_assert_eq(v, NOCHANGE);
}

Test(parse, sizes)
{
	size_ok("0", 0);
	size_ok("65536", 65536);
	size_ok("64K", 65536);
	size_ok("64k", 65536);
	size_ok("4M", 4u << 20);
	size_ok("4MiB", 4u << 20);
	size_ok("4MB", 4u << 20);
	size_ok("1G", 1ull << 30);
	size_ok("2T", 2ull << 40);
	size_ok("16777215T", 16777215ull << 40);
}

Test(parse, sizes_malformed)
{
	size_bad("");
	size_bad(" 5");
	size_bad("5 ");
	size_bad("+5");
	size_bad("-5");
	size_bad("0x10");
	size_bad("5X");
	size_bad("5KK");
	size_bad("5Ki");
	size_bad("4mib");
	size_bad("4Mb");
	size_bad("5KiBs");
	size_bad("K");
	size_bad("1.5M");
	size_bad("16777216T");            /* 2^64: overflows after the suffix */
	size_bad("18446744073709551616"); /* 2^64: overflows in the digits */
	cr_assert_eq(parse_size(NULL, &(uint64_t){0}), -1);
}

Test(parse, rates)
{
	rate_ok("100M", 100u << 20);
	rate_ok("100M/s", 100u << 20);
	rate_ok("20MiB/s", 20u << 20);
	rate_ok("1000", 1000);
	rate_ok("10Mbit", 1250000);
	rate_ok("10mbit/s", 1250000);
	rate_ok("100Mbit", 12500000);
	rate_ok("1Gbit", 125000000);
	rate_ok("64kbit", 8000);
	rate_ok("8bit", 1);
}

Test(parse, rates_malformed)
{
	rate_bad("0");
	rate_bad("0Mbit");
	rate_bad("7bit"); /* less than a byte per second */
	rate_bad("");
	rate_bad(" 5M");
	rate_bad("+5M");
	rate_bad("10Mbps");
	rate_bad("10Mb");
	rate_bad("10 Mbit");
	rate_bad("10Mbit/");
	rate_bad("10/s/s");
	rate_bad("/s");
	rate_bad("99999999999999999999Gbit");
	rate_bad("18446744073709551615Gbit"); /* overflows when multiplied */
	rate_bad("10Mbitxxxxxxxxxxxxxxxxxxxxxx");
}

Test(parse, uints_and_durations)
{
	uint64_t v = NOCHANGE;

	cr_assert_eq(parse_uint("5", 1, 10, &v), 0);
	cr_assert_eq(v, 5);
	v = NOCHANGE;
	cr_assert_eq(parse_uint("0", 1, 10, &v), -1);
	cr_assert_eq(parse_uint("11", 1, 10, &v), -1);
	cr_assert_eq(parse_uint(" 5", 1, 10, &v), -1);
	cr_assert_eq(parse_uint("+5", 1, 10, &v), -1);
	cr_assert_eq(parse_uint("5s", 1, 10, &v), -1);
	cr_assert_eq(parse_uint("", 0, 10, &v), -1);
	cr_assert_eq(v, NOCHANGE);

	cr_assert_eq(parse_duration("30", 1, 3600, &v), 0);
	cr_assert_eq(v, 30);
	cr_assert_eq(parse_duration("30s", 1, 3600, &v), 0);
	cr_assert_eq(v, 30);
	cr_assert_eq(parse_duration("5m", 1, 3600, &v), 0);
	cr_assert_eq(v, 300);
	cr_assert_eq(parse_duration("1h", 1, 3600, &v), 0);
	cr_assert_eq(v, 3600);
	cr_assert_eq(parse_duration("2h", 1, 3600, &v), -1); /* above max */
	cr_assert_eq(parse_duration("0s", 1, 3600, &v), -1);
	cr_assert_eq(parse_duration("5ms", 1, 3600, &v), -1);
	cr_assert_eq(parse_duration("5 m", 1, 3600, &v), -1);
	cr_assert_eq(parse_duration("99999999999999999d", 1, UINT64_MAX, &v), -1);
}

Test(parse, hostports)
{
	char host[64];
	uint16_t port = 7;

	cr_assert_eq(parse_hostport("127.0.0.1:7001", 0, host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 7001);
	cr_assert_eq(parse_hostport("[::1]:0", 1, host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "::1");
	cr_assert_eq(port, 0);
	cr_assert_eq(parse_hostport("tracker.example:80", 0, host, sizeof(host), &port), 0);
	cr_assert_str_eq(host, "tracker.example");

	port = 7;
	cr_assert_eq(parse_hostport("h:0", 0, host, sizeof(host), &port),
	             -1); /* port 0 dials nowhere */
	cr_assert_eq(parse_hostport(":0", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport(":80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("h:", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("h", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("h: 80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("h:+80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("h:65536", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("::1:80", 1, host, sizeof(host), &port), -1); /* ambiguous */
	cr_assert_eq(parse_hostport("[h]:80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("[::1:80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("[]:80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("a b:80", 1, host, sizeof(host), &port), -1);
	cr_assert_eq(parse_hostport("0123456789abcdef:1", 1, host, 16, &port), -1); /* too long */
	cr_assert_eq(port, 7);
}
