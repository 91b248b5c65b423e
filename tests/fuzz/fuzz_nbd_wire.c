/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the NBD server codec (proto/nbd_wire.c): every
 * parser that reads bytes from an NBD client, plus the invariants that tie
 * what they return to their input.
 *
 *   - nbdw_opt_header_decode: accepted only with the IHAVEOPT magic and
 *     exactly 16 bytes; TOO_BIG exactly when the length exceeds the bound.
 *   - nbdw_client_flags_decode: accepts only 4 bytes without unknown bits.
 *   - nbdw_opt_export_name_parse, nbdw_opt_go_parse, nbdw_opt_meta_parse:
 *     returned pointers lie inside the input, strings hold no NUL and are
 *     at most NBDW_MAX_STRING bytes, and the parts re-encode to exactly the
 *     input (so nothing was skipped and nothing read past the end).
 *   - nbdw_request_decode: an accepted request re-encodes to the input;
 *     nbdw_request_check, fed limits taken from the fuzz input, returns
 *     only errnos the spec names, and a request it accepts lies inside the
 *     export with flags the command allows.
 *   - the string-carrying encoders never accept a string we would refuse.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_wire.h"

#define ASSERT(c)                                                                                  \
	do {                                                                                       \
		if (!(c))                                                                          \
			abort();                                                                   \
	} while (0)

static const uint8_t *g_data;
static size_t g_size;

/* p[0..n) lies inside the current input. */
static void inside(const void *p, size_t n)
{
	if (n == 0)
		return;
	const uint8_t *b = p;
	ASSERT(b >= g_data && b + n <= g_data + g_size);
}

static void check_str(const struct nbdw_str *s)
{
	ASSERT(s->len <= NBDW_MAX_STRING);
	ASSERT(s->len == 0 ? s->ptr == NULL : s->ptr != NULL);
	inside(s->ptr, s->len);
	ASSERT(s->len == 0 || memchr(s->ptr, 0, s->len) == NULL);
}

static size_t put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
	return 4;
}

static size_t put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
	return 2;
}

static size_t put_str(uint8_t *p, const struct nbdw_str *s)
{
	if (s->len)
		memcpy(p, s->ptr, s->len);
	return s->len;
}

/* The first 16 bytes as an option header; the bound comes from the bytes after it. */
static void check_opt_header(const uint8_t *data, size_t size)
{
	struct nbdw_opt_header h;
	size_t n = size < NBDW_OPT_HEADER_LEN ? size : NBDW_OPT_HEADER_LEN;
	uint32_t max = size > n ? (uint32_t)data[n] * 64u : NBDW_MAX_OPTION_LEN;

	int rc = nbdw_opt_header_decode(data, n, max, &h);
	if (rc == NBDW_INVALID) {
		ASSERT(n < NBDW_OPT_HEADER_LEN || memcmp(data, "IHAVEOPT", 8) != 0);
		return;
	}
	ASSERT(n == NBDW_OPT_HEADER_LEN && memcmp(data, "IHAVEOPT", 8) == 0);
	ASSERT(rc == (h.len > max ? NBDW_TOO_BIG : 0));
	uint8_t out[8];
	put32(out, h.option);
	put32(out + 4, h.len);
	ASSERT(memcmp(out, data + 8, 8) == 0);
	/* Trailing bytes are refused. */
	if (size > NBDW_OPT_HEADER_LEN)
		ASSERT(nbdw_opt_header_decode(data, NBDW_OPT_HEADER_LEN + 1, max, &h) ==
		       NBDW_INVALID);
}

static void check_client_flags(const uint8_t *data, size_t size)
{
	uint32_t f;

	if (nbdw_client_flags_decode(data, size, &f) != 0)
		return;
	ASSERT(size == NBDW_CLIENT_FLAGS_LEN && (f & ~(uint32_t)NBDW_CFLAGS_KNOWN) == 0);
	ASSERT(f == ((uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 |
	             data[3]));
}

static void check_export_name(const uint8_t *data, size_t size)
{
	struct nbdw_str s;

	if (nbdw_opt_export_name_parse(data, size, &s) != 0)
		return;
	check_str(&s);
	ASSERT(s.len == size);
}

static void check_go(const uint8_t *data, size_t size, uint8_t *out)
{
	struct nbdw_opt_go go;

	if (nbdw_opt_go_parse(data, size, &go) != 0)
		return;
	check_str(&go.name);
	inside(go.info, 2 * (size_t)go.n_info);

	size_t n = put32(out, go.name.len);
	n += put_str(out + n, &go.name);
	n += put16(out + n, go.n_info);
	uint32_t mask = 0;
	for (uint16_t i = 0; i < go.n_info; i++) {
		uint16_t t = nbdw_opt_go_info(&go, i);
		if (t <= NBD_INFO_BLOCK_SIZE) {
			ASSERT(!(mask & (1u << t))); /* known types never repeat */
			mask |= 1u << t;
		}
		n += put16(out + n, t);
	}
	ASSERT(mask == go.info_mask);
	ASSERT(n == size && memcmp(out, data, size) == 0);
}

static void check_meta(const uint8_t *data, size_t size, uint8_t *out)
{
	struct nbdw_opt_meta m;
	struct nbdw_meta_iter it;
	struct nbdw_str q;

	if (nbdw_opt_meta_parse(data, size, &m) != 0)
		return;
	check_str(&m.name);
	inside(m.queries, m.queries_len);

	size_t n = put32(out, m.name.len);
	n += put_str(out + n, &m.name);
	n += put32(out + n, m.n_queries);
	uint32_t count = 0;
	nbdw_meta_iter_init(&it, &m);
	while (nbdw_meta_next(&it, &q)) {
		check_str(&q);
		n += put32(out + n, q.len);
		n += put_str(out + n, &q);
		count++;
	}
	ASSERT(count == m.n_queries);
	ASSERT(n == size && memcmp(out, data, size) == 0);
}

static void check_nodata(const uint8_t *data, size_t size)
{
	uint32_t opt = size > 0 ? data[0] % 16 : 0;
	int rc = nbdw_opt_nodata_check(opt, size);

	if (rc == 0)
		ASSERT(opt == NBD_OPT_ABORT || size == 0);
}

/* Limits taken from fuzz bytes, so the checker sees every combination. */
static void limits_from(const uint8_t *p, size_t n, struct nbdw_limits *l)
{
	uint8_t b[16] = {0};

	memcpy(b, p, n < sizeof(b) ? n : sizeof(b));
	memset(l, 0, sizeof(*l));
	l->export_size = 0;
	for (int i = 0; i < 8; i++)
		l->export_size = (l->export_size << 8) | b[i];
	if (b[8] & 0x80)
		l->export_size >>= (b[8] & 63); /* small sizes too */
	l->min_block = 1u << (b[9] % 17);
	l->max_payload = (b[10] & 1) ? NBDW_MAX_PAYLOAD : 4096u * (b[10] + 1u);
	l->tflags = (uint16_t)(((b[11] << 8) | b[12]) | NBD_FLAG_HAS_FLAGS);
	l->structured = b[13] & 1;
	l->meta_base_allocation = b[14] & 3;
}

static void check_request(const uint8_t *data, size_t size)
{
	struct nbdw_request r;
	struct nbdw_limits l;

	if (size < NBDW_REQUEST_LEN)
		return;
	if (nbdw_request_decode(data, NBDW_REQUEST_LEN, &r) != 0) {
		ASSERT(!(data[0] == 0x25 && data[1] == 0x60 && data[2] == 0x95 && data[3] == 0x13));
		return;
	}
	uint8_t out[NBDW_REQUEST_LEN];
	nbdw_request_encode(out, &r);
	ASSERT(memcmp(out, data, NBDW_REQUEST_LEN) == 0);
	ASSERT(nbdw_request_payload_len(&r) == (r.type == NBD_CMD_WRITE ? r.length : 0));

	limits_from(data + NBDW_REQUEST_LEN, size - NBDW_REQUEST_LEN, &l);
	int e = nbdw_request_check(&r, &l);
	ASSERT(e == 0 || e == NBD_EINVAL || e == NBD_EPERM || e == NBD_ENOSPC);
	if (e == NBD_ENOSPC)
		ASSERT(r.type == NBD_CMD_WRITE || r.type == NBD_CMD_WRITE_ZEROES);
	if (e == NBD_EPERM)
		ASSERT(l.tflags & NBD_FLAG_READ_ONLY);
	if (e != 0)
		return;

	/* Accepted: a known command, allowed flags, inside the export. */
	ASSERT(r.type <= NBD_CMD_BLOCK_STATUS);
	ASSERT(!(r.flags & ~0x1fu));
	if (r.flags & NBD_CMD_FLAG_FUA)
		ASSERT(l.tflags & NBD_FLAG_SEND_FUA);
	if (r.flags & NBD_CMD_FLAG_DF)
		ASSERT(r.type == NBD_CMD_READ && l.structured && (l.tflags & NBD_FLAG_SEND_DF));
	if (r.flags & (NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO))
		ASSERT(r.type == NBD_CMD_WRITE_ZEROES);
	if (r.flags & NBD_CMD_FLAG_REQ_ONE)
		ASSERT(r.type == NBD_CMD_BLOCK_STATUS);
	if (r.type == NBD_CMD_BLOCK_STATUS)
		ASSERT(l.structured && l.meta_base_allocation != 0);
	if (r.type == NBD_CMD_WRITE || r.type == NBD_CMD_TRIM || r.type == NBD_CMD_WRITE_ZEROES)
		ASSERT(!(l.tflags & NBD_FLAG_READ_ONLY));
	if (r.type == NBD_CMD_DISC || r.type == NBD_CMD_FLUSH) {
		ASSERT(r.offset == 0 && r.length == 0);
		return;
	}
	ASSERT(r.length > 0);
	ASSERT(r.offset <= l.export_size && r.length <= l.export_size - r.offset);
	ASSERT(r.offset % l.min_block == 0 && r.length % l.min_block == 0);
	if (r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE)
		ASSERT(r.length <= l.max_payload);
}

/* Encoders given the input as a string: they accept exactly what we would parse. */
static void check_encoders(const uint8_t *data, size_t size, uint8_t *out, size_t cap)
{
	const char *s = (const char *)data;
	int ok = size <= NBDW_MAX_STRING && (size == 0 || memchr(data, 0, size) == NULL);

	size_t n = nbdw_rep_err_encode(out, cap, 1, NBD_REP_ERR_INVALID, s, size);
	ASSERT(ok ? n == NBDW_REP_HEADER_LEN + size : n == 0);
	n = nbdw_rep_meta_context_encode(out, cap, 10, 1, s, size);
	ASSERT(ok && size > 0 ? n == NBDW_REP_HEADER_LEN + 4 + size : n == 0);
	if (n) {
		struct nbdw_str e;
		ASSERT(nbdw_opt_export_name_parse(out + NBDW_REP_HEADER_LEN + 4, size, &e) == 0);
	}
	n = nbdw_chunk_error_offset_encode(out, cap, 0, 1, NBD_EIO, s, size, 42);
	ASSERT(ok ? n == NBDW_ERROR_CHUNK_HDR_LEN + size + 8 : n == 0);
	n = nbdw_rep_server_encode(out, cap, 3, s, size, s, size);
	ASSERT(ok ? n == NBDW_REP_HEADER_LEN + 4 + 2 * size : n == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Re-encodings are at most the input size; encoders need header + 2 * input. */
	size_t cap = 64 + 2 * size;
	uint8_t *out = malloc(cap);

	if (!out)
		return 0;
	g_data = data;
	g_size = size;
	check_opt_header(data, size);
	check_client_flags(data, size);
	check_export_name(data, size);
	check_go(data, size, out);
	check_meta(data, size, out);
	check_nodata(data, size);
	check_request(data, size);
	check_encoders(data, size, out, cap);
	free(out);
	return 0;
}
