/* SPDX-License-Identifier: ISC */
/*
 * announce: query-string parser and bencode encoder of the tracker (see
 * announce.h). Pure code: no I/O, no allocation, no globals, no logging.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "announce.h"
#include "util.h"
#include "vcrypto.h"

_Static_assert(ANNOUNCE_ID_LEN + ANNOUNCE_TOKEN_LEN == ANNOUNCE_MAX_KEY,
               "a p2pvbd key is kept in announce_req.key");

/* The parameters the announce parser knows; each may appear once. */
enum param {
	P_INFO_HASH,
	P_PEER_ID,
	P_PORT,
	P_UPLOADED,
	P_DOWNLOADED,
	P_LEFT,
	P_EVENT,
	P_NUMWANT,
	P_COMPACT,
	P_IP,
	P_KEY,
	P_UNKNOWN,
};

static const char *const param_name[] = {
    [P_INFO_HASH] = "info_hash",
    [P_PEER_ID] = "peer_id",
    [P_PORT] = "port",
    [P_UPLOADED] = "uploaded",
    [P_DOWNLOADED] = "downloaded",
    [P_LEFT] = "left",
    [P_EVENT] = "event",
    [P_NUMWANT] = "numwant",
    [P_COMPACT] = "compact",
    [P_IP] = "ip",
    [P_KEY] = "key",
};

static enum param param_of(const char *k, size_t len)
{
	for (int p = 0; p < P_UNKNOWN; p++)
		if (strlen(param_name[p]) == len && memcmp(param_name[p], k, len) == 0)
			return (enum param)p;
	return P_UNKNOWN;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *what)
{
	if (errlen > 0)
		snprintf(err, errlen, fmt, what);
}

/*
 * Percent-decode in[0..len) into out (room for cap bytes). Returns the
 * decoded length, -1 for a '%' not followed by two hex digits, -2 if the
 * result does not fit.
 */
static long pct_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3)
				return -1;
			hi = hex_digit((unsigned char)in[i + 1]);
			lo = hex_digit((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (o == cap)
			return -2;
		out[o++] = c;
	}
	return (long)o;
}

/* Decimal digits only (no sign, no spaces), at least one, no overflow. */
static int parse_u64(const uint8_t *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

static int eq(const uint8_t *s, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

/*
 * Split q into key=value pairs and call fn for each (empty segments, as in
 * "a=1&&b=2", are skipped). Stops at the first nonzero return of fn. The
 * query length and the number of pairs are bounded here for every caller.
 */
typedef int (*pair_fn)(void *ctx, const char *k, size_t klen, const char *v, size_t vlen, char *err,
                       size_t errlen);
static int for_each_pair(const char *q, size_t len, pair_fn fn, void *ctx, char *err, size_t errlen)
{
	size_t i = 0;
	int n = 0;

	if (len > ANNOUNCE_MAX_QUERY) {
		set_err(err, errlen, "query string too long (over %s bytes)", "4096");
		return -1;
	}
	while (i < len) {
		const char *seg = q + i, *amp, *eqs;
		size_t slen, klen;

		amp = memchr(seg, '&', len - i);
		slen = amp ? (size_t)(amp - seg) : len - i;
		i += slen + 1;
		if (slen == 0)
			continue;
		if (++n > ANNOUNCE_MAX_PARAMS) {
			set_err(err, errlen, "too many parameters (over %s)", "64");
			return -1;
		}
		eqs = memchr(seg, '=', slen);
		klen = eqs ? (size_t)(eqs - seg) : slen;
		if (fn(ctx, seg, klen, eqs ? eqs + 1 : seg + slen, eqs ? slen - klen - 1 : 0, err,
		       errlen) != 0)
			return -1;
	}
	return 0;
}

struct announce_ctx {
	struct announce_req *r;
	unsigned seen; /* bit per enum param */
};

static int announce_pair(void *vctx, const char *k, size_t klen, const char *v, size_t vlen,
                         char *err, size_t errlen)
{
	struct announce_ctx *ctx = vctx;
	struct announce_req *r = ctx->r;
	enum param p = param_of(k, klen);
	const char *name;
	uint8_t val[ANNOUNCE_MAX_VALUE];
	long n;
	uint64_t u;

	if (p == P_UNKNOWN)
		return 0;
	name = param_name[p];
	if (ctx->seen & (1u << p)) {
		set_err(err, errlen, "duplicate parameter %s", name);
		return -1;
	}
	ctx->seen |= 1u << p;
	if (vlen > ANNOUNCE_MAX_VALUE) {
		set_err(err, errlen, "value of %s too long", name);
		return -1;
	}
	n = pct_decode(v, vlen, val, sizeof(val));
	if (n < 0) {
		set_err(err, errlen, "bad percent-encoding in %s", name);
		return -1;
	}

	switch (p) {
	case P_INFO_HASH:
	case P_PEER_ID:
		if (n != ANNOUNCE_HASH_LEN) {
			set_err(err, errlen, "%s must be 20 bytes", name);
			return -1;
		}
		memcpy(p == P_INFO_HASH ? r->info_hash : r->peer_id, val, ANNOUNCE_HASH_LEN);
		return 0;
	case P_PORT:
		if (parse_u64(val, (size_t)n, &u) < 0 || u == 0 || u > 65535) {
			set_err(err, errlen, "bad %s (1 to 65535)", name);
			return -1;
		}
		r->port = (uint16_t)u;
		return 0;
	case P_UPLOADED:
	case P_DOWNLOADED:
	case P_LEFT:
	case P_NUMWANT:
		if (parse_u64(val, (size_t)n, &u) < 0) {
			set_err(err, errlen, "bad number in %s", name);
			return -1;
		}
		if (p == P_UPLOADED)
			r->uploaded = u;
		else if (p == P_DOWNLOADED)
			r->downloaded = u;
		else if (p == P_LEFT)
			r->left = u;
		else
			r->numwant = u > ANNOUNCE_NUMWANT_MAX ? ANNOUNCE_NUMWANT_MAX : (uint32_t)u;
		return 0;
	case P_EVENT:
		/* "paused" is BEP 21's partial seed: a regular announce for us. */
		if (n == 0 || eq(val, (size_t)n, "empty") || eq(val, (size_t)n, "paused"))
			r->event = ANNOUNCE_EV_NONE;
		else if (eq(val, (size_t)n, "started"))
			r->event = ANNOUNCE_EV_STARTED;
		else if (eq(val, (size_t)n, "completed"))
			r->event = ANNOUNCE_EV_COMPLETED;
		else if (eq(val, (size_t)n, "stopped"))
			r->event = ANNOUNCE_EV_STOPPED;
		else {
			set_err(err, errlen, "bad %s (started, completed, stopped or empty)", name);
			return -1;
		}
		return 0;
	case P_COMPACT:
		if (eq(val, (size_t)n, "0"))
			r->compact = 0;
		else if (eq(val, (size_t)n, "1"))
			r->compact = 1;
		else {
			set_err(err, errlen, "bad %s (0 or 1)", name);
			return -1;
		}
		return 0;
	case P_IP:
		if (n > ANNOUNCE_MAX_IP || memchr(val, '\0', (size_t)n) != NULL) {
			set_err(err, errlen, "bad %s", name);
			return -1;
		}
		memcpy(r->ip, val, (size_t)n);
		r->ip[n] = '\0';
		return 0;
	case P_KEY:
		if (n == ANNOUNCE_P2PVBD_KEY_HEX &&
		    hex_decode((const char *)val, (size_t)n, r->key, ANNOUNCE_MAX_KEY) == 0) {
			/* A p2pvbd member's key: volume id || token (PROTOCOL.md §7.8). */
			r->p2pvbd = 1;
			r->key_len = ANNOUNCE_MAX_KEY;
			memcpy(r->p2pvbd_volume, r->key, ANNOUNCE_ID_LEN);
			memcpy(r->p2pvbd_token, r->key + ANNOUNCE_ID_LEN, ANNOUNCE_TOKEN_LEN);
			return 0;
		}
		if (n > ANNOUNCE_MAX_KEY) {
			set_err(err, errlen,
			        "%s too long (32 bytes, or a p2pvbd key of 64 hex digits)", name);
			return -1;
		}
		memcpy(r->key, val, (size_t)n);
		r->key_len = (size_t)n;
		return 0;
	case P_UNKNOWN:
		break;
	}
	return 0;
}

int announce_parse(const char *q, size_t len, struct announce_req *r, char *err, size_t errlen)
{
	struct announce_ctx ctx = {.r = r};
	static const enum param required[] = {P_INFO_HASH, P_PEER_ID, P_PORT, P_LEFT};

	if (errlen > 0)
		err[0] = '\0';
	memset(r, 0, sizeof(*r));
	r->numwant = ANNOUNCE_NUMWANT_DEFAULT;
	r->compact = 1;
	if (for_each_pair(q, len, announce_pair, &ctx, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (!(ctx.seen & (1u << required[i]))) {
			set_err(err, errlen, "missing %s", param_name[required[i]]);
			return -1;
		}
	}
	return 0;
}

static int scrape_pair(void *vctx, const char *k, size_t klen, const char *v, size_t vlen,
                       char *err, size_t errlen)
{
	struct announce_scrape_req *s = vctx;
	uint8_t val[ANNOUNCE_MAX_VALUE];
	long n;

	if (param_of(k, klen) != P_INFO_HASH)
		return 0;
	if (s->count == ANNOUNCE_MAX_SCRAPE) {
		set_err(err, errlen, "too many info_hash values (%s at most)", "64");
		return -1;
	}
	if (vlen > ANNOUNCE_MAX_VALUE) {
		set_err(err, errlen, "value of %s too long", "info_hash");
		return -1;
	}
	n = pct_decode(v, vlen, val, sizeof(val));
	if (n < 0) {
		set_err(err, errlen, "bad percent-encoding in %s", "info_hash");
		return -1;
	}
	if (n != ANNOUNCE_HASH_LEN) {
		set_err(err, errlen, "%s must be 20 bytes", "info_hash");
		return -1;
	}
	memcpy(s->info_hash[s->count++], val, ANNOUNCE_HASH_LEN);
	return 0;
}

int announce_parse_scrape(const char *q, size_t len, struct announce_scrape_req *s, char *err,
                          size_t errlen)
{
	if (errlen > 0)
		err[0] = '\0';
	s->count = 0;
	return for_each_pair(q, len, scrape_pair, s, err, errlen);
}

/* Bencode writer */

void announce_benc_init(struct announce_benc *b, uint8_t *buf, size_t cap)
{
	b->buf = buf;
	b->len = 0;
	b->cap = cap;
	b->overflow = 0;
}

static void put(struct announce_benc *b, const void *p, size_t n)
{
	if (b->overflow || b->cap - b->len < n) {
		b->overflow = 1;
		return;
	}
	if (n > 0)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
}

/*
 * The decimal digits of v into out (room for 20, UINT64_MAX's length);
 * returns how many. An announce reply writes a dozen numbers, and snprintf
 * costs about ten times as much as this loop.
 */
static size_t put_decimal(uint64_t v, char *out)
{
	char rev[20];
	size_t n = 0;

	do {
		rev[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (size_t i = 0; i < n; i++)
		out[i] = rev[n - 1 - i];
	return n;
}

void announce_benc_int(struct announce_benc *b, int64_t v)
{
	char tmp[23]; /* 'i', '-', 20 digits at most, 'e' */
	size_t n = 0;

	tmp[n++] = 'i';
	if (v < 0)
		tmp[n++] = '-';
	/* 0 - (uint64_t)v is the magnitude of a negative v, INT64_MIN included. */
	n += put_decimal(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, tmp + n);
	tmp[n++] = 'e';
	put(b, tmp, n);
}

void announce_benc_str(struct announce_benc *b, const void *s, size_t len)
{
	char tmp[21]; /* 20 digits at most, ':' */
	size_t n = put_decimal(len, tmp);

	tmp[n++] = ':';
	put(b, tmp, n);
	put(b, s, len);
}

void announce_benc_cstr(struct announce_benc *b, const char *s)
{
	announce_benc_str(b, s, strlen(s));
}

void announce_benc_dict(struct announce_benc *b)
{
	put(b, "d", 1);
}

void announce_benc_list(struct announce_benc *b)
{
	put(b, "l", 1);
}

void announce_benc_end(struct announce_benc *b)
{
	put(b, "e", 1);
}

void announce_encode_failure(struct announce_benc *b, const char *reason)
{
	announce_benc_dict(b);
	announce_benc_cstr(b, "failure reason");
	announce_benc_cstr(b, reason);
	announce_benc_end(b);
}

/* Counters are u64 inside the tracker; bencode integers here are signed 64-bit. */
static int64_t clamp64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

void announce_encode_reply(struct announce_benc *b, const struct announce_reply *rep)
{
	/* Keys in byte order, as BEP 3 requires. */
	announce_benc_dict(b);
	announce_benc_cstr(b, "complete");
	announce_benc_int(b, clamp64(rep->complete));
	announce_benc_cstr(b, "incomplete");
	announce_benc_int(b, clamp64(rep->incomplete));
	announce_benc_cstr(b, "interval");
	announce_benc_int(b, rep->interval);
	announce_benc_cstr(b, "min interval");
	announce_benc_int(b, rep->min_interval);
	announce_benc_cstr(b, "peers");
	announce_benc_str(b, rep->peers4, rep->npeers4 * ANNOUNCE_PEER4_LEN);
	if (rep->npeers6 > 0) {
		announce_benc_cstr(b, "peers6");
		announce_benc_str(b, rep->peers6, rep->npeers6 * ANNOUNCE_PEER6_LEN);
	}
	announce_benc_end(b);
}

static int entry_cmp(const void *a, const void *b)
{
	return memcmp(((const struct announce_scrape_entry *)a)->info_hash,
	              ((const struct announce_scrape_entry *)b)->info_hash, ANNOUNCE_HASH_LEN);
}

void announce_encode_scrape(struct announce_benc *b, struct announce_scrape_entry *e, size_t n)
{
	if (n > 1)
		qsort(e, n, sizeof(*e), entry_cmp);
	announce_benc_dict(b);
	announce_benc_cstr(b, "files");
	announce_benc_dict(b);
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && memcmp(e[i].info_hash, e[i - 1].info_hash, ANNOUNCE_HASH_LEN) == 0)
			continue;
		announce_benc_str(b, e[i].info_hash, ANNOUNCE_HASH_LEN);
		announce_benc_dict(b);
		announce_benc_cstr(b, "complete");
		announce_benc_int(b, clamp64(e[i].complete));
		announce_benc_cstr(b, "downloaded");
		announce_benc_int(b, clamp64(e[i].downloaded));
		announce_benc_cstr(b, "incomplete");
		announce_benc_int(b, clamp64(e[i].incomplete));
		announce_benc_end(b);
	}
	announce_benc_end(b);
	announce_benc_end(b);
}
