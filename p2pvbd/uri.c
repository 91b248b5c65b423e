/* SPDX-License-Identifier: ISC */
/*
 * uri: parse and format the volume URI. Pure code: no I/O, no logging;
 * every error is reported as one line in the caller's buffer, because the
 * caller knows whether it came from a command line or a file.
 *
 * The parser is strict and canonical: a tracker URL may hold raw only the
 * characters uri_format() leaves raw, so that format(parse(s)) is never
 * longer than s and always parses back to the same struct.
 */
#include "uri.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define ID_HEX  (2 * MANIFEST_ID_LEN)
#define KEY_HEX (2 * VCRYPTO_PK_LEN) /* also the secret's: VCRYPTO_SECRET_LEN bytes */
_Static_assert(VCRYPTO_SECRET_LEN == VCRYPTO_PK_LEN, "key= and secret= have one length");
#define HOST_MAX    255 /* fits uri_peer.host with its NUL; DNS names are at most 253 */
#define TRACKER_MAX ((int)sizeof(((struct uri *)0)->tracker[0]) - 1)

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write the reason to err (if there is room) and return -1. */
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * Characters a tracker URL carries raw in the volume URI. Everything else
 * ('&' and '=' that would split parameters, '#' and '?' that end or start
 * URI parts, '%' itself, '[' ']', spaces, controls, non-ASCII) is
 * percent-encoded.
 */
static int tracker_raw_ok(unsigned char c)
{
	return is_alnum(c) || (c != 0 && strchr("-._~:/@!$'()*+,;", c) != NULL);
}

/* Bytes a decoded tracker URL may hold: printable ASCII, no space. */
static int tracker_byte_ok(unsigned char c)
{
	return c > 0x20 && c < 0x7f;
}

/*
 * A DNS name or IPv4 address: labels of 1..63 letters, digits and hyphens,
 * not starting or ending with a hyphen, separated by single dots.
 */
static int hostname_ok(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > HOST_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!is_alnum(c) && c != '-')
			return 0;
		if (c == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[len - 1] != '-';
}

/* An IPv6 address (no brackets, no zone): inet_pton is pure and exact. */
static int ipv6_ok(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr a;

	if (len == 0 || len >= sizeof(buf))
		return 0;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

/* 1..65535 in decimal, digits only. */
static int port_parse(const char *s, size_t len, uint16_t *port)
{
	uint32_t v = 0;

	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int uri_parse_hostport(const char *s, size_t len, struct uri_peer *p)
{
	const char *colon, *host;
	size_t hlen;

	memset(p, 0, sizeof(*p));
	if (len == 0 || memchr(s, '\0', len) != NULL)
		return -1;
	if (s[0] == '[') {
		const char *close = memchr(s, ']', len);

		if (close == NULL || close + 1 == s + len || close[1] != ':')
			return -1;
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
		if (!ipv6_ok(host, hlen))
			return -1;
	} else {
		colon = memchr(s, ':', len);
		if (colon == NULL)
			return -1;
		host = s;
		hlen = (size_t)(colon - s);
		/* A second colon means an unbracketed IPv6 address: ambiguous, refuse. */
		if (!hostname_ok(host, hlen))
			return -1;
	}
	if (port_parse(colon + 1, (size_t)(s + len - colon - 1), &p->port) < 0)
		return -1;
	memcpy(p->host, host, hlen);
	p->host[hlen] = '\0';
	return 0;
}

/* Percent-decode a tracker value into out (TRACKER_MAX + 1 bytes). */
static int tracker_decode(const char *s, size_t len, char *out, char *err, size_t errlen)
{
	size_t n = 0;

	if (len == 0)
		return fail(err, errlen, "empty tracker= value");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3 || (hi = hex_digit((unsigned char)s[i + 1])) < 0 ||
			    (lo = hex_digit((unsigned char)s[i + 2])) < 0)
				return fail(err, errlen, "bad percent escape in tracker= value");
			c = (unsigned char)(hi << 4 | lo);
			if (!tracker_byte_ok(c))
				return fail(err, errlen,
				            "tracker= value encodes a control, space or non-ASCII "
				            "byte (%%%02X)",
				            c);
			i += 2;
		} else if (!tracker_raw_ok(c)) {
			return fail(err, errlen,
			            "tracker= value has a character that must be percent-encoded "
			            "(0x%02x)",
			            c);
		}
		if (n == (size_t)TRACKER_MAX)
			return fail(err, errlen, "tracker URL longer than %d bytes", TRACKER_MAX);
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return 0;
}

/* Does the parameter [p, p+len) have the name `name`? */
static int param_is(const char *p, size_t len, const char *name)
{
	size_t n = strlen(name);

	return len == n && memcmp(p, name, n) == 0;
}

int uri_parse(const char *s, size_t len, struct uri *u, char *err, size_t errlen)
{
	const char *end = s + len, *p, *q;
	int have_key = 0, have_secret = 0;
	const size_t scheme_len = sizeof(URI_SCHEME) - 1;

	memset(u, 0, sizeof(*u));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (len > URI_MAX_LEN)
		return fail(err, errlen, "URI longer than %d bytes", URI_MAX_LEN);
	if (memchr(s, '\0', len) != NULL)
		return fail(err, errlen, "URI contains a NUL byte");
	if (len < scheme_len || memcmp(s, URI_SCHEME, scheme_len) != 0)
		return fail(err, errlen, "URI does not start with %s", URI_SCHEME);

	p = s + scheme_len;
	q = memchr(p, '?', (size_t)(end - p));
	if (q == NULL)
		return fail(err, errlen, "URI has no parameters (key= and secret= are required)");
	if (q - p != ID_HEX || hex_decode(p, ID_HEX, u->volume_id, sizeof(u->volume_id)) < 0)
		return fail(err, errlen, "volume id must be %d hex digits", ID_HEX);

	for (p = q + 1;; p = q + 1) {
		const char *eq, *val;
		size_t plen, nlen, vlen;

		q = memchr(p, '&', (size_t)(end - p));
		if (q == NULL)
			q = end;
		plen = (size_t)(q - p);
		if (plen == 0)
			return fail(err, errlen, "empty parameter in URI");
		eq = memchr(p, '=', plen);
		if (eq == NULL)
			return fail(err, errlen, "parameter '%.*s' has no value",
			            (int)(plen > 32 ? 32 : plen), p);
		nlen = (size_t)(eq - p);
		val = eq + 1;
		vlen = (size_t)(q - val);

		if (param_is(p, nlen, "key")) {
			if (have_key)
				return fail(err, errlen, "key= given twice");
			if (hex_decode(val, vlen, u->key, sizeof(u->key)) < 0)
				return fail(err, errlen, "key= must be %d hex digits", KEY_HEX);
			have_key = 1;
		} else if (param_is(p, nlen, "secret")) {
			if (have_secret)
				return fail(err, errlen, "secret= given twice");
			if (hex_decode(val, vlen, u->secret, sizeof(u->secret)) < 0)
				return fail(err, errlen, "secret= must be %d hex digits", KEY_HEX);
			have_secret = 1;
		} else if (param_is(p, nlen, "peer")) {
			if (u->npeers == URI_MAX_PEERS)
				return fail(err, errlen, "more than %d peer= parameters",
				            URI_MAX_PEERS);
			if (uri_parse_hostport(val, vlen, &u->peer[u->npeers]) < 0)
				return fail(err, errlen,
				            "peer= '%.*s' is not host:port or [ipv6]:port with "
				            "port 1..65535",
				            (int)(vlen > 64 ? 64 : vlen), val);
			u->npeers++;
		} else if (param_is(p, nlen, "tracker")) {
			if (u->ntrackers == URI_MAX_PEERS)
				return fail(err, errlen, "more than %d tracker= parameters",
				            URI_MAX_PEERS);
			if (tracker_decode(val, vlen, u->tracker[u->ntrackers], err, errlen) < 0)
				return -1;
			u->ntrackers++;
		} else {
			return fail(err, errlen, "unknown URI parameter '%.*s'",
			            (int)(nlen > 32 ? 32 : nlen), p);
		}
		if (q == end)
			break;
	}
	if (!have_key)
		return fail(err, errlen, "URI has no key= (the source's public key)");
	if (!have_secret)
		return fail(err, errlen, "URI has no secret= (the join secret)");
	return 0;
}

/* A bounded appender: remembers overflow instead of writing past cap. */
struct sbuf {
	char *p;
	size_t cap, len;
	int overflow;
};

static void sb_putn(struct sbuf *b, const char *s, size_t n)
{
	if (b->overflow || n >= b->cap - b->len) {
		b->overflow = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_hex(struct sbuf *b, const uint8_t *in, size_t n)
{
	char hex[KEY_HEX + 1];

	hex_encode(in, n, hex);
	sb_putn(b, hex, 2 * n);
}

/* Is the peer one uri_parse() would accept? */
static int peer_ok(const struct uri_peer *pe)
{
	size_t n = strnlen(pe->host, sizeof(pe->host));

	if (n == sizeof(pe->host) || pe->port == 0)
		return 0;
	return strchr(pe->host, ':') ? ipv6_ok(pe->host, n) : hostname_ok(pe->host, n);
}

/*
 * Also -1 if u holds something uri_parse() would refuse, or the result would
 * be longer than URI_MAX_LEN: a URI we print must be one we accept.
 */
int uri_format(const struct uri *u, char *out, size_t cap)
{
	struct sbuf b = {out, cap, 0, 0};
	char tmp[16];

	if (cap == 0)
		return -1;
	out[0] = '\0';
	if (u->npeers < 0 || u->npeers > URI_MAX_PEERS || u->ntrackers < 0 ||
	    u->ntrackers > URI_MAX_PEERS)
		return -1;
	sb_puts(&b, URI_SCHEME);
	sb_hex(&b, u->volume_id, sizeof(u->volume_id));
	sb_puts(&b, "?key=");
	sb_hex(&b, u->key, sizeof(u->key));
	sb_puts(&b, "&secret=");
	sb_hex(&b, u->secret, sizeof(u->secret));
	for (int i = 0; i < u->npeers; i++) {
		const struct uri_peer *pe = &u->peer[i];
		int v6 = strchr(pe->host, ':') != NULL;

		if (!peer_ok(pe))
			return -1;
		sb_puts(&b, v6 ? "&peer=[" : "&peer=");
		sb_puts(&b, pe->host);
		snprintf(tmp, sizeof(tmp), "%s:%u", v6 ? "]" : "", pe->port);
		sb_puts(&b, tmp);
	}
	for (int i = 0; i < u->ntrackers; i++) {
		const char *t = u->tracker[i];
		size_t n = strnlen(t, sizeof(u->tracker[i]));

		if (n == 0 || n == sizeof(u->tracker[i]))
			return -1;
		sb_puts(&b, "&tracker=");
		for (size_t j = 0; j < n; j++) {
			unsigned char c = (unsigned char)t[j];

			if (!tracker_byte_ok(c))
				return -1;
			if (tracker_raw_ok(c)) {
				sb_putn(&b, (const char *)&c, 1);
			} else {
				snprintf(tmp, sizeof(tmp), "%%%02X", c);
				sb_putn(&b, tmp, 3);
			}
		}
	}
	if (b.overflow || b.len > URI_MAX_LEN) {
		out[0] = '\0';
		return -1;
	}
	return (int)b.len;
}
