/* SPDX-License-Identifier: ISC */
/*
 * preauth: see preauth.h.
 */
#include "preauth.h"

#include <string.h>

#include <netinet/in.h>

int preauth_addr_of(const struct sockaddr *sa, struct preauth_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		out->b[10] = 0xff;
		out->b[11] = 0xff;
		memcpy(out->b + 12, &s4->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		const uint8_t *a = s6->sin6_addr.s6_addr;
		static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		/* An IPv4 peer of a dual-stack socket is one IPv4 address, not a /64. */
		if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0)
			memcpy(out->b, a, 16);
		else
			memcpy(out->b, a, 8);
		return 0;
	}
	return -1;
}

int preauth_count_addr(const struct preauth *t, const struct preauth_addr *a)
{
	int n = 0;

	for (int i = 0; i < PREAUTH_MAX; i++)
		n += t->slot[i].conn != NULL && memcmp(&t->slot[i].addr, a, sizeof(*a)) == 0;
	return n;
}

enum preauth_verdict preauth_check(const struct preauth *t, const struct preauth_addr *a,
                                   void **victim)
{
	int best = -1;

	*victim = NULL;
	if (preauth_count_addr(t, a) >= PREAUTH_PER_ADDR)
		return PREAUTH_REFUSE;
	if (t->n < PREAUTH_MAX)
		return PREAUTH_ADMIT;
	/* Full: the oldest of those that got least far. */
	for (int i = 0; i < PREAUTH_MAX; i++) {
		const struct preauth_slot *s = &t->slot[i];

		if (s->conn == NULL)
			continue;
		if (best < 0 || s->hello_ok < t->slot[best].hello_ok ||
		    (s->hello_ok == t->slot[best].hello_ok && s->since_ns < t->slot[best].since_ns))
			best = i;
	}
	if (best < 0)
		return PREAUTH_ADMIT; /* n was wrong: cannot happen */
	*victim = t->slot[best].conn;
	return PREAUTH_EVICT;
}

int preauth_add(struct preauth *t, const struct preauth_addr *a, uint64_t now_ns, void *conn)
{
	for (int i = 0; i < PREAUTH_MAX; i++) {
		struct preauth_slot *s = &t->slot[i];

		if (s->conn != NULL)
			continue;
		s->conn = conn;
		s->addr = *a;
		s->since_ns = now_ns;
		s->hello_ok = 0;
		t->n++;
		return 0;
	}
	return -1;
}

void preauth_hello_ok(struct preauth *t, const void *conn)
{
	for (int i = 0; i < PREAUTH_MAX; i++)
		if (conn != NULL && t->slot[i].conn == conn)
			t->slot[i].hello_ok = 1;
}

int preauth_remove(struct preauth *t, const void *conn)
{
	for (int i = 0; i < PREAUTH_MAX; i++) {
		struct preauth_slot *s = &t->slot[i];

		if (conn == NULL || s->conn != conn)
			continue;
		memset(s, 0, sizeof(*s));
		t->n--;
		return 1;
	}
	return 0;
}
