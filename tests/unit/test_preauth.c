/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of p2pvbd/preauth.c: the table of handshakes in progress and
 * its decisions (DESIGN.md rule 9). Connections are plain pointers into an
 * array; time is a number.
 *
 * What is checked: addresses as counted (IPv4, IPv4-mapped IPv6, IPv6 by
 * its /64, other families refused); the per-address cap refuses the next
 * one from that address and nobody else; a full table gives the place of
 * the oldest connection that did not get past HELLO, then of the oldest of
 * all; removal frees exactly one place; nothing is counted twice.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "preauth.h"

static struct preauth t;
static int conns[4 * PREAUTH_MAX]; /* stand-ins for the caller's connections */

static void setup(void)
{
	memset(&t, 0, sizeof(t));
}

TestSuite(preauth, .init = setup);

static struct preauth_addr v4(const char *s)
{
	struct sockaddr_in sa;
	struct preauth_addr a;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(1234);
	cr_assert_eq(inet_pton(AF_INET, s, &sa.sin_addr), 1);
	cr_assert_eq(preauth_addr_of((struct sockaddr *)&sa, &a), 0);
	return a;
}

static struct preauth_addr v6(const char *s, uint16_t port)
{
	struct sockaddr_in6 sa;
	struct preauth_addr a;

	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_port = htons(port);
	cr_assert_eq(inet_pton(AF_INET6, s, &sa.sin6_addr), 1);
	cr_assert_eq(preauth_addr_of((struct sockaddr *)&sa, &a), 0);
	return a;
}

/* Admit conns[i] from a at time now, as the swarm does; returns the verdict. */
static enum preauth_verdict admit(const struct preauth_addr *a, int i, uint64_t now, void **victim)
{
	enum preauth_verdict v = preauth_check(&t, a, victim);

	if (v == PREAUTH_EVICT)
		cr_assert_eq(preauth_remove(&t, *victim), 1, "the victim was not in the table");
	if (v != PREAUTH_REFUSE)
		cr_assert_eq(preauth_add(&t, a, now, &conns[i]), 0);
	return v;
}

Test(preauth, addresses)
{
	struct preauth_addr a = v4("192.0.2.7"), b = v4("192.0.2.8");
	struct preauth_addr m = v6("::ffff:192.0.2.7", 1), m2 = v6("::ffff:192.0.2.8", 1);
	struct preauth_addr x = v6("2001:db8:1:2::1", 1), y = v6("2001:db8:1:2:ffff::9", 2);
	struct preauth_addr z = v6("2001:db8:1:3::1", 1);
	struct sockaddr_un su;
	struct preauth_addr u;

	cr_assert(memcmp(&a, &b, sizeof(a)) != 0);
	cr_assert(memcmp(&a, &m, sizeof(a)) == 0, "an IPv4-mapped address is its IPv4 address");
	cr_assert(memcmp(&m, &m2, sizeof(a)) != 0, "IPv4-mapped addresses are not taken by /64");
	cr_assert(memcmp(&x, &y, sizeof(x)) == 0, "one IPv6 /64 is one address");
	cr_assert(memcmp(&x, &z, sizeof(x)) != 0, "another /64 is another address");
	memset(&su, 0, sizeof(su));
	su.sun_family = AF_UNIX;
	cr_assert_eq(preauth_addr_of((struct sockaddr *)&su, &u), -1);
}

Test(preauth, per_address_cap_refuses_only_that_address)
{
	struct preauth_addr a = v4("192.0.2.1"), b = v4("192.0.2.2");
	void *victim;

	for (int i = 0; i < PREAUTH_PER_ADDR; i++)
		cr_assert_eq(admit(&a, i, (uint64_t)i, &victim), PREAUTH_ADMIT);
	cr_assert_eq(preauth_count_addr(&t, &a), PREAUTH_PER_ADDR);
	cr_assert_eq(preauth_check(&t, &a, &victim), PREAUTH_REFUSE);
	cr_assert_null(victim);
	cr_assert_eq(t.n, PREAUTH_PER_ADDR, "a refusal changes nothing");
	/* Another address is not held back by a's connections. */
	cr_assert_eq(admit(&b, PREAUTH_PER_ADDR, 100, &victim), PREAUTH_ADMIT);
	/* One of a's leaves: a may start one more. */
	cr_assert_eq(preauth_remove(&t, &conns[1]), 1);
	cr_assert_eq(preauth_remove(&t, &conns[1]), 0, "removed twice");
	cr_assert_eq(admit(&a, PREAUTH_PER_ADDR + 1, 101, &victim), PREAUTH_ADMIT);
	cr_assert_eq(preauth_check(&t, &a, &victim), PREAUTH_REFUSE);
}

/* Fill the table from PREAUTH_MAX addresses, conns[i] accepted at time 10 + i. */
static void fill(void)
{
	void *victim;
	char s[32];

	for (int i = 0; i < PREAUTH_MAX; i++) {
		struct preauth_addr a;

		snprintf(s, sizeof(s), "10.0.%d.%d", i / 200, 1 + i % 200);
		a = v4(s);
		cr_assert_eq(admit(&a, i, 10 + (uint64_t)i, &victim), PREAUTH_ADMIT);
	}
	cr_assert_eq(t.n, PREAUTH_MAX);
}

Test(preauth, full_table_drops_the_oldest)
{
	struct preauth_addr n = v4("198.51.100.1");
	void *victim;

	fill();
	cr_assert_eq(admit(&n, PREAUTH_MAX, 1000, &victim), PREAUTH_EVICT);
	cr_assert_eq(victim, &conns[0], "not the oldest");
	cr_assert_eq(t.n, PREAUTH_MAX);
	/* The next newcomer takes the next oldest; the newcomer before it stays. */
	cr_assert_eq(admit(&n, PREAUTH_MAX + 1, 1001, &victim), PREAUTH_EVICT);
	cr_assert_eq(victim, &conns[1]);
}

Test(preauth, handshakes_past_hello_are_dropped_last)
{
	struct preauth_addr n = v4("198.51.100.1");
	void *victim;

	fill();
	/* The oldest and every other got past HELLO. */
	for (int i = 0; i < PREAUTH_MAX; i += 2)
		preauth_hello_ok(&t, &conns[i]);
	cr_assert_eq(admit(&n, PREAUTH_MAX, 1000, &victim), PREAUTH_EVICT);
	cr_assert_eq(victim, &conns[1], "dropped one that got further than another");
	/* Once all got past HELLO, the oldest goes. */
	for (int i = 1; i < PREAUTH_MAX; i += 2)
		preauth_hello_ok(&t, &conns[i]);
	preauth_hello_ok(&t, &conns[PREAUTH_MAX]);
	cr_assert_eq(preauth_check(&t, &n, &victim), PREAUTH_EVICT);
	cr_assert_eq(victim, &conns[0]);
}

Test(preauth, per_address_cap_before_eviction)
{
	struct preauth_addr a = v4("10.0.0.1"); /* fill() gave it conns[0] */
	void *victim;

	fill();
	for (int i = 0; i < PREAUTH_PER_ADDR - 1; i++)
		cr_assert_eq(admit(&a, PREAUTH_MAX + i, 500 + (uint64_t)i, &victim), PREAUTH_EVICT);
	/* conns[0] was a's own oldest and is gone; a holds PREAUTH_PER_ADDR - 1 now. */
	cr_assert_eq(preauth_count_addr(&t, &a), PREAUTH_PER_ADDR - 1);
	cr_assert_eq(admit(&a, 3 * PREAUTH_MAX, 600, &victim), PREAUTH_EVICT);
	cr_assert_eq(preauth_count_addr(&t, &a), PREAUTH_PER_ADDR);
	/* A full address never evicts anyone: it is refused. */
	cr_assert_eq(preauth_check(&t, &a, &victim), PREAUTH_REFUSE);
	cr_assert_null(victim);
}

Test(preauth, remove_unknown_and_null)
{
	struct preauth_addr a = v4("10.9.9.9");
	void *victim;

	cr_assert_eq(preauth_remove(&t, NULL), 0);
	cr_assert_eq(preauth_remove(&t, &conns[5]), 0);
	preauth_hello_ok(&t, &conns[5]); /* not there: nothing happens */
	cr_assert_eq(t.n, 0);
	cr_assert_eq(admit(&a, 0, 1, &victim), PREAUTH_ADMIT);
	cr_assert_eq(t.n, 1);
	cr_assert_eq(preauth_remove(&t, &conns[0]), 1);
	cr_assert_eq(t.n, 0);
	cr_assert_eq(preauth_count_addr(&t, &a), 0);
}

Test(preauth, add_to_full_table_fails)
{
	struct preauth_addr a = v4("10.9.9.9");

	fill();
	cr_assert_eq(preauth_add(&t, &a, 5, &conns[PREAUTH_MAX]), -1);
	cr_assert_eq(t.n, PREAUTH_MAX);
}
