/* SPDX-License-Identifier: ISC */
/*
 * tracker: swarm and peer tables (see tracker.h).
 *
 * Swarms live in a chained hash table whose size is fixed at start from
 * max_swarms, so it never rehashes. The bucket of an info_hash depends on
 * a random seed, so that a client choosing info hashes cannot put every
 * swarm into one chain. Peers of a swarm are an array searched linearly by
 * peer_id: at most max_peers entries, and the reply has to walk them anyway
 * to pick peers.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tracker.h"
#include "util.h"
#include "vcrypto.h"

/* The largest bucket array we allocate (8 MiB of pointers); beyond it chains get longer. */
#define MAX_BUCKETS (1u << 20)

static uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

static size_t bucket_of(const struct tracker *t, const uint8_t *info_hash)
{
	uint32_t tail;
	uint64_t h = t->rng_seed;

	memcpy(&tail, info_hash + 16, sizeof(tail));
	h = mix(h ^ load64(info_hash));
	h = mix(h ^ load64(info_hash + 8));
	h = mix(h ^ tail);
	return (size_t)(h & (t->nbucket - 1));
}

static uint64_t rng_next(struct tracker *t)
{
	uint64_t x = t->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	t->rng = x;
	return x;
}

struct tracker *tracker_new(const struct tracker_config *cfg)
{
	struct tracker *t = xcalloc(1, sizeof(*t));
	struct timespec ts;
	size_t n = 16;

	t->cfg = *cfg;
	while (n < cfg->max_swarms && n < MAX_BUCKETS)
		n <<= 1;
	t->nbucket = n;
	t->bucket = xcalloc(n, sizeof(*t->bucket));
	t->receipt = xcalloc(TRACKER_MAX_RECEIPTS, sizeof(*t->receipt));
	clock_gettime(CLOCK_REALTIME, &ts);
	t->rng_seed = mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)t);
	t->rng = t->rng_seed | 1;
	t->created = addrtab_new(cfg->max_swarms / 4, mix(t->rng_seed + 1));
	return t;
}

static void swarm_free(struct tracker_swarm *s)
{
	free(s->peer);
	free(s);
}

void tracker_free(struct tracker *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nbucket; i++) {
		struct tracker_swarm *s = t->bucket[i], *next;

		for (; s != NULL; s = next) {
			next = s->next;
			swarm_free(s);
		}
	}
	free(t->bucket);
	free(t->receipt);
	addrtab_free(t->created);
	free(t);
}

uint64_t tracker_peer_timeout(const struct tracker *t)
{
	return 2 * (uint64_t)t->cfg.interval + TRACKER_GRACE_S;
}

struct tracker_swarm *tracker_find(const struct tracker *t, const uint8_t *info_hash)
{
	struct tracker_swarm *s = t->bucket[bucket_of(t, info_hash)];

	while (s != NULL && memcmp(s->info_hash, info_hash, ANNOUNCE_HASH_LEN) != 0)
		s = s->next;
	return s;
}

static void swarm_unlink(struct tracker *t, struct tracker_swarm *s)
{
	struct tracker_swarm **pp = &t->bucket[bucket_of(t, s->info_hash)];

	while (*pp != s)
		pp = &(*pp)->next;
	*pp = s->next;
	t->nswarm--;
	addrtab_sub(t->created, &s->creator);
	swarm_free(s);
}

/* Remove peer i (swap with the last one). */
static void peer_remove(struct tracker *t, struct tracker_swarm *s, unsigned i)
{
	if (s->peer[i].left == 0)
		s->complete--;
	s->peer[i] = s->peer[s->npeer - 1];
	s->npeer--;
	t->npeer--;
}

static struct tracker_peer *peer_find(struct tracker_swarm *s, const uint8_t *peer_id)
{
	for (unsigned i = 0; i < s->npeer; i++)
		if (memcmp(s->peer[i].peer_id, peer_id, ANNOUNCE_PEER_ID_LEN) == 0)
			return &s->peer[i];
	return NULL;
}

/* Append the compact form of peer p to rep (peers4 or peers6). */
static void reply_add(struct announce_reply *rep, uint8_t *peers4, uint8_t *peers6,
                      const struct tracker_peer *p)
{
	uint8_t *o;

	if (p->addr.family == 4) {
		o = peers4 + rep->npeers4++ * ANNOUNCE_PEER4_LEN;
		memcpy(o, p->addr.ip, 4);
		o += 4;
	} else {
		o = peers6 + rep->npeers6++ * ANNOUNCE_PEER6_LEN;
		memcpy(o, p->addr.ip, 16);
		o += 16;
	}
	o[0] = (uint8_t)(p->addr.port >> 8);
	o[1] = (uint8_t)p->addr.port;
}

/* Both peers sent the same key (for a p2pvbd swarm: the same volume and token). */
static int same_key(const struct tracker_peer *a, const struct tracker_peer *b)
{
	return b != NULL && a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

/*
 * Pick up to want peers of s other than `self`, starting at a random
 * index so that every peer gets handed out. A seed is not sent other
 * seeds: they have nothing to exchange.
 */
static void pick_peers(struct tracker *t, const struct tracker_swarm *s,
                       const struct tracker_peer *self, uint32_t want, struct announce_reply *rep,
                       uint8_t *peers4, uint8_t *peers6)
{
	unsigned start;

	if (s->npeer == 0 || want == 0)
		return;
	start = (unsigned)(rng_next(t) % s->npeer);
	for (unsigned k = 0; k < s->npeer && rep->npeers4 + rep->npeers6 < want; k++) {
		const struct tracker_peer *p = &s->peer[(start + k) % s->npeer];

		if (p == self)
			continue;
		if (self != NULL && self->left == 0 && p->left == 0)
			continue;
		if (s->p2pvbd && !same_key(p, self))
			continue; /* another token: not a member of the volume we know */
		reply_add(rep, peers4, peers6, p);
	}
}

int tracker_is_p2pvbd(const struct announce_req *rq)
{
	uint8_t ih[MANIFEST_INFOHASH_LEN];

	if (!rq->p2pvbd)
		return 0;
	manifest_infohash(rq->p2pvbd_volume, ih);
	return memcmp(ih, rq->info_hash, ANNOUNCE_HASH_LEN) == 0;
}

/*
 * s has just become a p2pvbd volume's swarm: drop the peers that did not
 * announce with a key of that volume. None of them can be a member (every
 * member sends the key); they are what a non-member put there first.
 */
static void swarm_seal(struct tracker *t, struct tracker_swarm *s)
{
	s->p2pvbd = 1;
	for (unsigned i = 0; i < s->npeer;) {
		if (!s->peer[i].p2pvbd)
			peer_remove(t, s, i);
		else
			i++;
	}
}

/* Peers of s whose announces come from k. */
static unsigned peers_from(const struct tracker_swarm *s, const struct addrtab_key *k)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->npeer; i++)
		n += memcmp(s->peer[i].src.b, k->b, ADDRTAB_KEY_LEN) == 0;
	return n;
}

int tracker_announce(struct tracker *t, const struct announce_req *rq,
                     const struct tracker_addr *from, uint64_t now, struct announce_reply *rep,
                     uint8_t *peers4, uint8_t *peers6, const char **why)
{
	return tracker_announce_src(t, rq, from, from, now, rep, peers4, peers6, why);
}

int tracker_announce_src(struct tracker *t, const struct announce_req *rq,
                         const struct tracker_addr *from, const struct tracker_addr *src,
                         uint64_t now, struct announce_reply *rep, uint8_t *peers4, uint8_t *peers6,
                         const char **why)
{
	struct tracker_swarm *s = tracker_find(t, rq->info_hash);
	struct tracker_peer *p = s ? peer_find(s, rq->peer_id) : NULL;
	int member = tracker_is_p2pvbd(rq);
	struct addrtab_key srck;

	memset(rep, 0, sizeof(*rep));
	rep->interval = t->cfg.interval;
	rep->min_interval = t->cfg.interval / 2 > 0 ? t->cfg.interval / 2 : 1;
	rep->peers4 = peers4;
	rep->peers6 = peers6;
	addrtab_key(src->family, src->ip, &srck);

	if (p != NULL && p->key_len > 0 &&
	    (p->key_len != rq->key_len || memcmp(p->key, rq->key, p->key_len) != 0)) {
		*why = "this peer_id is registered with another key";
		return -1;
	}
	if (s != NULL && s->p2pvbd && !member) {
		*why = "this swarm is a p2pvbd volume's: announces need the key derived from its "
		       "join secret (p2pvbd fetch and seed send it)";
		return -1;
	}

	if (rq->event == ANNOUNCE_EV_STOPPED) {
		if (p != NULL) {
			peer_remove(t, s, (unsigned)(p - s->peer));
			if (s->npeer == 0) {
				swarm_unlink(t, s);
				return 0;
			}
		}
		if (s != NULL) {
			rep->complete = s->complete;
			rep->incomplete = s->npeer - s->complete;
		}
		return 0;
	}

	if (s == NULL) {
		size_t b;

		if (t->nswarm >= t->cfg.max_swarms) {
			*why = "tracker full: too many swarms (--max-swarms)";
			return -1;
		}
		if (t->cfg.max_swarms_per_addr > 0 &&
		    addrtab_count(t->created, &srck) >= t->cfg.max_swarms_per_addr) {
			*why = "too many swarms created from your address "
			       "(--max-swarms-per-address)";
			return -1;
		}
		s = xcalloc(1, sizeof(*s));
		memcpy(s->info_hash, rq->info_hash, ANNOUNCE_HASH_LEN);
		s->creator = srck;
		addrtab_add(t->created, &srck);
		b = bucket_of(t, s->info_hash);
		s->next = t->bucket[b];
		t->bucket[b] = s;
		t->nswarm++;
	}
	if (member && !s->p2pvbd) {
		swarm_seal(t, s);
		p = peer_find(s, rq->peer_id); /* peers moved */
	}
	if (p == NULL) {
		if (s->npeer >= t->cfg.max_peers) {
			*why = "swarm full: too many peers (--max-peers)";
			goto refused;
		}
		if (t->cfg.max_peers_per_addr > 0 &&
		    peers_from(s, &srck) >= t->cfg.max_peers_per_addr) {
			*why = "too many peers from your address in this swarm "
			       "(--max-peers-per-address)";
			goto refused;
		}
		if (s->npeer == s->cap) {
			s->cap = s->cap ? s->cap * 2 : 4;
			if (s->cap > t->cfg.max_peers)
				s->cap = t->cfg.max_peers;
			s->peer = xrealloc(s->peer, s->cap * sizeof(*s->peer));
		}
		p = &s->peer[s->npeer++];
		memset(p, 0, sizeof(*p));
		memcpy(p->peer_id, rq->peer_id, ANNOUNCE_PEER_ID_LEN);
		memcpy(p->key, rq->key, rq->key_len);
		p->key_len = (uint8_t)rq->key_len;
		p->p2pvbd = (uint8_t)member;
		p->src = srck;
		p->left = UINT64_MAX; /* not a seed until it says so, below */
		t->npeer++;
	}

	if (p->left == 0 && rq->left != 0)
		s->complete--;
	else if (p->left != 0 && rq->left == 0)
		s->complete++;
	if (rq->event == ANNOUNCE_EV_COMPLETED && !p->completed) {
		p->completed = 1;
		s->downloaded++;
	}
	p->addr = *from;
	p->src = srck;
	p->uploaded = rq->uploaded;
	p->downloaded = rq->downloaded;
	p->left = rq->left;
	p->last_seen = now;

	rep->complete = s->complete;
	rep->incomplete = s->npeer - s->complete;
	pick_peers(t, s, p, rq->numwant, rep, peers4, peers6);
	return 0;

refused:
	/* A swarm this announce just created (or emptied, by sealing it) holds no one. */
	if (s->npeer == 0)
		swarm_unlink(t, s);
	return -1;
}

static void scrape_fill(const struct tracker_swarm *s, struct announce_scrape_entry *e)
{
	memcpy(e->info_hash, s->info_hash, ANNOUNCE_HASH_LEN);
	e->complete = s->complete;
	e->incomplete = s->npeer - s->complete;
	e->downloaded = s->downloaded;
}

void tracker_scrape_one(const struct tracker *t, const uint8_t *info_hash,
                        struct announce_scrape_entry *e)
{
	const struct tracker_swarm *s = tracker_find(t, info_hash);

	memset(e, 0, sizeof(*e));
	memcpy(e->info_hash, info_hash, ANNOUNCE_HASH_LEN);
	if (s != NULL)
		scrape_fill(s, e);
}

/* The first swarm in bucket it->bucket or after it, or NULL. */
static const struct tracker_swarm *iter_settle(const struct tracker *t, struct tracker_iter *it)
{
	while (it->s == NULL && ++it->bucket < t->nbucket)
		it->s = t->bucket[it->bucket];
	return it->s;
}

const struct tracker_swarm *tracker_first(const struct tracker *t, struct tracker_iter *it)
{
	it->bucket = 0;
	it->s = t->nbucket > 0 ? t->bucket[0] : NULL;
	return iter_settle(t, it);
}

const struct tracker_swarm *tracker_next(const struct tracker *t, struct tracker_iter *it)
{
	if (it->s == NULL)
		return NULL;
	it->s = it->s->next;
	return iter_settle(t, it);
}

size_t tracker_scrape_all(const struct tracker *t, struct announce_scrape_entry *e, size_t max)
{
	struct tracker_iter it;
	size_t n = 0;

	for (const struct tracker_swarm *s = tracker_first(t, &it); s != NULL && n < max;
	     s = tracker_next(t, &it))
		scrape_fill(s, &e[n++]);
	return n;
}

unsigned tracker_expire(struct tracker *t, uint64_t now)
{
	uint64_t timeout = tracker_peer_timeout(t);
	unsigned dropped = 0;

	for (size_t b = 0; b < t->nbucket; b++) {
		struct tracker_swarm *s = t->bucket[b], *next;

		for (; s != NULL; s = next) {
			next = s->next;
			for (unsigned i = 0; i < s->npeer;) {
				if (now - s->peer[i].last_seen > timeout) {
					peer_remove(t, s, i);
					dropped++;
				} else {
					i++;
				}
			}
			if (s->npeer == 0)
				swarm_unlink(t, s);
		}
	}
	return dropped;
}

int tracker_receipt_add(struct tracker *t, const struct manifest_receipt *rc, uint64_t wall_now,
                        const char **why)
{
	unsigned same_volume = 0;

	for (unsigned i = 0; i < t->nreceipt; i++) {
		struct tracker_receipt *r = &t->receipt[i];

		if (memcmp(r->rc.volume_id, rc->volume_id, MANIFEST_ID_LEN) != 0)
			continue;
		if (memcmp(r->rc.signer, rc->signer, VCRYPTO_PK_LEN) == 0 &&
		    r->rc.generation == rc->generation) {
			r->rc = *rc;
			r->received = wall_now;
			return 0;
		}
		same_volume++;
	}
	if (same_volume >= TRACKER_MAX_RECEIPTS_VOL) {
		*why = "too many receipts for this volume";
		return -1;
	}
	if (t->nreceipt >= TRACKER_MAX_RECEIPTS) {
		*why = "too many receipts";
		return -1;
	}
	t->receipt[t->nreceipt].rc = *rc;
	t->receipt[t->nreceipt].received = wall_now;
	t->nreceipt++;
	return 0;
}
