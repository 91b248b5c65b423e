/* SPDX-License-Identifier: ISC */
/*
 * treply: decoding tracker replies. See treply.h.
 */
#include "treply.h"

#include <string.h>

struct cur {
	const uint8_t *p, *end;
	const char *why;
};

static int fail(struct cur *c, const char *why)
{
	if (c->why == NULL)
		c->why = why;
	return -1;
}

/* i<digits>e; no leading zeros, no "-0" (BEP 3). */
static int read_int(struct cur *c, int64_t *out)
{
	int neg = 0, digits = 0;
	uint64_t v = 0;

	if (c->p >= c->end || *c->p != 'i')
		return fail(c, "expected an integer");
	c->p++;
	if (c->p < c->end && *c->p == '-') {
		neg = 1;
		c->p++;
	}
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (digits == 1 && v == 0)
			return fail(c, "integer with a leading zero");
		if (v > (uint64_t)INT64_MAX / 10)
			return fail(c, "integer too large");
		v = v * 10 + (uint64_t)(*c->p - '0');
		if (v > (uint64_t)INT64_MAX)
			return fail(c, "integer too large");
		digits++;
		c->p++;
	}
	if (digits == 0 || (neg && v == 0))
		return fail(c, "malformed integer");
	if (c->p >= c->end || *c->p != 'e')
		return fail(c, "unterminated integer");
	c->p++;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return 0;
}

/* <len>:<bytes>; the length is checked against what is left before use. */
static int read_str(struct cur *c, const uint8_t **s, size_t *len)
{
	uint64_t n = 0;
	int digits = 0;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (digits == 1 && n == 0)
			return fail(c, "string length with a leading zero");
		n = n * 10 + (uint64_t)(*c->p - '0');
		if (n > (uint64_t)(c->end - c->p))
			return fail(c, "string longer than the reply");
		digits++;
		c->p++;
	}
	if (digits == 0)
		return fail(c, "expected a string");
	if (c->p >= c->end || *c->p != ':')
		return fail(c, "malformed string length");
	c->p++;
	if (n > (uint64_t)(c->end - c->p))
		return fail(c, "string longer than the reply");
	*s = c->p;
	*len = (size_t)n;
	c->p += n;
	return 0;
}

static int skip_value(struct cur *c, int depth)
{
	const uint8_t *s;
	size_t n;
	int64_t v;

	if (depth > TREPLY_MAX_DEPTH)
		return fail(c, "nested too deeply");
	if (c->p >= c->end)
		return fail(c, "truncated");
	switch (*c->p) {
	case 'i':
		return read_int(c, &v);
	case 'l':
	case 'd': {
		int dict = *c->p == 'd';

		c->p++;
		while (c->p < c->end && *c->p != 'e') {
			if (dict && read_str(c, &s, &n) != 0)
				return -1;
			if (skip_value(c, depth + 1) != 0)
				return -1;
		}
		if (c->p >= c->end)
			return fail(c, "unterminated list or dictionary");
		c->p++;
		return 0;
	}
	default:
		return read_str(c, &s, &n);
	}
}

static int add_peer(struct treply *r, int family, const uint8_t *addr, uint16_t port)
{
	struct treply_peer *p;

	if (port == 0)
		return -1;
	if (r->npeers >= TREPLY_MAX_PEERS)
		return 0; /* enough */
	p = &r->peers[r->npeers++];
	memset(p, 0, sizeof(*p));
	p->family = (uint8_t)family;
	memcpy(p->addr, addr, family == 4 ? 4 : 16);
	p->port = port;
	return 0;
}

static int compact_peers(struct cur *c, struct treply *r, int family)
{
	size_t rec = family == 4 ? 6 : 18, alen = family == 4 ? 4 : 16, n;
	const uint8_t *s;

	if (read_str(c, &s, &n) != 0)
		return -1;
	if (n % rec != 0)
		return fail(c, "compact peer list of a bad length");
	for (size_t i = 0; i < n; i += rec)
		if (add_peer(r, family, s + i, (uint16_t)(s[i + alen] << 8 | s[i + alen + 1])) != 0)
			return fail(c, "peer with port 0");
	return 0;
}

/* Dotted-quad IPv4 only; a name or IPv6 text in the non-compact form is skipped. */
static int parse_ipv4(const uint8_t *s, size_t n, uint8_t out[4])
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;

		while (i < n && s[i] >= '0' && s[i] <= '9' && digits < 3) {
			v = v * 10 + (unsigned)(s[i] - '0');
			i++;
			digits++;
		}
		if (digits == 0 || v > 255)
			return -1;
		out[part] = (uint8_t)v;
		if (part < 3) {
			if (i >= n || s[i] != '.')
				return -1;
			i++;
		}
	}
	return i == n ? 0 : -1;
}

/* The non-compact form: l d 2:ip <text> 4:port i<n>e ... e ... e */
static int dict_peers(struct cur *c, struct treply *r)
{
	c->p++; /* 'l' */
	while (c->p < c->end && *c->p != 'e') {
		const uint8_t *ip = NULL, *k, *s;
		size_t iplen = 0, kl, sl;
		int64_t port = -1;
		uint8_t a4[4];

		if (*c->p != 'd')
			return fail(c, "peer list entry is not a dictionary");
		c->p++;
		while (c->p < c->end && *c->p != 'e') {
			if (read_str(c, &k, &kl) != 0)
				return -1;
			if (kl == 2 && memcmp(k, "ip", 2) == 0) {
				if (read_str(c, &s, &sl) != 0)
					return -1;
				ip = s;
				iplen = sl;
			} else if (kl == 4 && memcmp(k, "port", 4) == 0) {
				if (read_int(c, &port) != 0)
					return -1;
			} else if (skip_value(c, 2) != 0) {
				return -1;
			}
		}
		if (c->p >= c->end)
			return fail(c, "unterminated peer entry");
		c->p++;
		if (ip == NULL || port < 1 || port > 65535)
			return fail(c, "peer entry without ip or with a bad port");
		if (parse_ipv4(ip, iplen, a4) == 0)
			add_peer(r, 4, a4, (uint16_t)port);
	}
	if (c->p >= c->end)
		return fail(c, "unterminated peer list");
	c->p++;
	return 0;
}

int treply_parse(const uint8_t *buf, size_t len, struct treply *r, const char **why)
{
	struct cur c = {buf, buf + len, NULL};

	memset(r, 0, sizeof(*r));
	r->interval = -1;
	r->min_interval = -1;
	if (len == 0 || buf[0] != 'd') {
		*why = "the reply is not a bencoded dictionary";
		return -1;
	}
	c.p++;
	while (c.p < c.end && *c.p != 'e') {
		const uint8_t *k, *s;
		size_t kl, sl;
		int rc;

		if (read_str(&c, &k, &kl) != 0)
			goto bad;
#define KEY(lit) (kl == sizeof(lit) - 1 && memcmp(k, lit, kl) == 0)
		if (KEY("interval")) {
			rc = read_int(&c, &r->interval);
		} else if (KEY("min interval")) {
			rc = read_int(&c, &r->min_interval);
		} else if (KEY("failure reason")) {
			rc = read_str(&c, &s, &sl);
			r->failure = (const char *)s;
			r->failure_len = sl;
		} else if (KEY("peers")) {
			rc = c.p < c.end && *c.p == 'l' ? dict_peers(&c, r)
			                                : compact_peers(&c, r, 4);
		} else if (KEY("peers6")) {
			rc = compact_peers(&c, r, 6);
		} else if (KEY("receipts")) {
			rc = read_str(&c, &r->receipts, &r->receipts_len);
		} else {
			rc = skip_value(&c, 1);
		}
#undef KEY
		if (rc != 0)
			goto bad;
	}
	if (c.p >= c.end) {
		fail(&c, "unterminated dictionary");
		goto bad;
	}
	c.p++;
	if (c.p != c.end) {
		fail(&c, "bytes after the dictionary");
		goto bad;
	}
	if (r->interval < -1 || r->min_interval < -1) {
		*why = "negative interval";
		return -1;
	}
	return 0;
bad:
	*why = c.why ? c.why : "malformed reply";
	return -1;
}
