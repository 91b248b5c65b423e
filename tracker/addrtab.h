/* SPDX-License-Identifier: ISC */
/*
 * addrtab: counters per source address, for the tracker's per-address caps
 * (connections open, swarms created). Pure code: no I/O, no clock.
 *
 * An IPv4 address counts as itself; an IPv6 address counts as its /64,
 * because one host or one customer usually holds a whole /64 and could
 * otherwise pick a fresh address for every connection. An entry exists only
 * while its count is above zero, so the table holds at most as many
 * entries as there are things counted.
 */
#ifndef P2PVBD_ADDRTAB_H
#define P2PVBD_ADDRTAB_H

#include <stddef.h>
#include <stdint.h>

/* Family (4 or 6), then the address (IPv4) or the /64 prefix (IPv6), zero-padded. */
#define ADDRTAB_KEY_LEN 17

struct addrtab_key {
	uint8_t b[ADDRTAB_KEY_LEN];
};

/* The key of an address: family 4 (ip[0..4)) or 6 (ip[0..16)). */
void addrtab_key(int family, const uint8_t *ip, struct addrtab_key *k);
/* "192.0.2.1" or "2001:db8:1:2::/64" into out (at least 64 bytes). */
void addrtab_key_format(const struct addrtab_key *k, char *out, size_t len);

struct addrtab;

/*
 * A new, empty table (aborts on out-of-memory). expected: about how many
 * addresses it will hold (sizes the bucket array); seed: random, so that
 * clients cannot choose addresses that share one chain.
 */
struct addrtab *addrtab_new(size_t expected, uint64_t seed);
void addrtab_free(struct addrtab *t);

/* The count of k (0 if absent). */
unsigned addrtab_count(const struct addrtab *t, const struct addrtab_key *k);
/* Add one to the count of k; returns the new count. */
unsigned addrtab_add(struct addrtab *t, const struct addrtab_key *k);
/* Take one from the count of k (which must be above 0); at 0 the entry goes. */
void addrtab_sub(struct addrtab *t, const struct addrtab_key *k);
/* How many addresses have a count above 0. */
size_t addrtab_size(const struct addrtab *t);

#endif
