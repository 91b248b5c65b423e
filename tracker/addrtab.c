/* SPDX-License-Identifier: ISC */
/*
 * addrtab: counters per source address (see addrtab.h). A chained hash
 * table whose bucket array is sized once, from the expected number of
 * addresses; chains grow beyond it, which only costs time.
 */
#include "addrtab.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* The largest bucket array (1 MiB of pointers). */
#define MAX_BUCKETS (1u << 17)

struct addrtab_entry {
	struct addrtab_key k;
	unsigned count;
	struct addrtab_entry *next;
};

struct addrtab {
	struct addrtab_entry **bucket; /* owned, nbucket (a power of two) */
	size_t nbucket, n;
	uint64_t seed;
};

void addrtab_key(int family, const uint8_t *ip, struct addrtab_key *k)
{
	memset(k, 0, sizeof(*k));
	k->b[0] = (uint8_t)family;
	memcpy(k->b + 1, ip, family == 4 ? 4 : 8);
}

void addrtab_key_format(const struct addrtab_key *k, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (k->b[0] == 4) {
		inet_ntop(AF_INET, k->b + 1, ip, sizeof(ip));
		snprintf(out, len, "%s", ip);
	} else {
		uint8_t a[16] = {0};

		memcpy(a, k->b + 1, 8);
		inet_ntop(AF_INET6, a, ip, sizeof(ip));
		snprintf(out, len, "%s/64", ip);
	}
}

/* A keyed mix of the key's 17 bytes (the family byte and two 64-bit halves). */
static size_t bucket_of(const struct addrtab *t, const struct addrtab_key *k)
{
	uint64_t h = t->seed ^ k->b[0], w;

	for (int i = 0; i < 2; i++) {
		memcpy(&w, k->b + 1 + 8 * i, sizeof(w));
		h ^= w;
		h ^= h >> 33;
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 33;
		h *= 0xc4ceb9fe1a85ec53ull;
		h ^= h >> 33;
	}
	return (size_t)(h & (t->nbucket - 1));
}

struct addrtab *addrtab_new(size_t expected, uint64_t seed)
{
	struct addrtab *t = xcalloc(1, sizeof(*t));
	size_t n = 16;

	while (n < expected && n < MAX_BUCKETS)
		n <<= 1;
	t->nbucket = n;
	t->bucket = xcalloc(n, sizeof(*t->bucket));
	t->seed = seed;
	return t;
}

void addrtab_free(struct addrtab *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nbucket; i++) {
		struct addrtab_entry *e = t->bucket[i], *next;

		for (; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(t->bucket);
	free(t);
}

static struct addrtab_entry **find(const struct addrtab *t, const struct addrtab_key *k)
{
	struct addrtab_entry **pp = &t->bucket[bucket_of(t, k)];

	while (*pp != NULL && memcmp((*pp)->k.b, k->b, ADDRTAB_KEY_LEN) != 0)
		pp = &(*pp)->next;
	return pp;
}

unsigned addrtab_count(const struct addrtab *t, const struct addrtab_key *k)
{
	struct addrtab_entry *e = *find(t, k);

	return e ? e->count : 0;
}

unsigned addrtab_add(struct addrtab *t, const struct addrtab_key *k)
{
	struct addrtab_entry **pp = find(t, k);

	if (*pp == NULL) {
		*pp = xcalloc(1, sizeof(**pp));
		(*pp)->k = *k;
		t->n++;
	}
	return ++(*pp)->count;
}

void addrtab_sub(struct addrtab *t, const struct addrtab_key *k)
{
	struct addrtab_entry **pp = find(t, k), *e = *pp;

	if (e == NULL || e->count == 0)
		fatal("addrtab_sub: address not counted");
	if (--e->count == 0) {
		*pp = e->next;
		free(e);
		t->n--;
	}
}

size_t addrtab_size(const struct addrtab *t)
{
	return t->n;
}
