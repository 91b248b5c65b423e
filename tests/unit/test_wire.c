/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/wire.c: round trips of every record and message,
 * byte-exact encodings (so that a symmetric endianness bug in encoder and
 * decoder cannot pass), and rejection of malformed input.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* Big enough for any message the samples below produce. */
#define BUF_LEN (WIRE_MAX_MSG + 64)

static uint8_t blob_bytes[300];
static uint8_t page_bytes[3 * 48];
static uint8_t map_bits[3] = {0xa5, 0x3c, 0x05}; /* 19 bits: top 5 bits of byte 2 clear */
static uint8_t piece_bytes[1000];
static const char err_text[] = "chunk 7 is not held here";

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7u);
}

/*
 * One valid message of every type, with every field holding a value whose
 * bytes differ, so that a swapped or misplaced field shows.
 */
static int make_sample(uint8_t type, struct wire_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	fill_pattern(blob_bytes, sizeof(blob_bytes), 1);
	fill_pattern(page_bytes, sizeof(page_bytes), 2);
	fill_pattern(piece_bytes, sizeof(piece_bytes), 3);

	switch (type) {
	case WIRE_AUTH:
		fill_pattern(m->u.auth.identity, WIRE_KEY_LEN, 10);
		m->u.auth.flags = WIRE_AUTH_SOURCE;
		fill_pattern(m->u.auth.sig, WIRE_SIG_LEN, 20);
		return 0;
	case WIRE_ERROR:
	case WIRE_RECEIPT_ACK:
		m->u.error.code = type == WIRE_ERROR ? WIRE_E_UNAVAILABLE : WIRE_OK;
		m->u.error.text = err_text;
		m->u.error.text_len = (uint16_t)strlen(err_text);
		return 0;
	case WIRE_KEEPALIVE:
	case WIRE_GET_ROOT:
		return 0;
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		m->u.blob.data = blob_bytes;
		m->u.blob.len = sizeof(blob_bytes);
		return 0;
	case WIRE_GET_PAGE:
		m->u.get_page.page = 0x01020304;
		return 0;
	case WIRE_PAGE:
		m->u.page.page = 0x0a0b0c0d;
		m->u.page.root_gen = 0x1122334455667788ull;
		m->u.page.data = page_bytes;
		m->u.page.len = sizeof(page_bytes);
		return 0;
	case WIRE_HAVE_MAP:
		m->u.have_map.first = 0x00010000;
		m->u.have_map.count = 19;
		m->u.have_map.bits = map_bits;
		return 0;
	case WIRE_HAVE:
		m->u.have.chunk = 0xdeadbeef;
		m->u.have.gen = 0x0102030405060708ull;
		return 0;
	case WIRE_REQUEST:
		m->u.request.blk = (struct wire_block){.chunk = 5,
		                                       .gen = 0xa1a2a3a4a5a6a7a8ull,
		                                       .offset = 0x00040000,
		                                       .length = WIRE_MAX_BLOCK};
		m->u.request.prio = WIRE_PRIO_URGENT;
		return 0;
	case WIRE_PIECE:
		m->u.piece.chunk = 77;
		m->u.piece.gen = 3;
		m->u.piece.offset = 4096;
		m->u.piece.data = piece_bytes;
		m->u.piece.len = sizeof(piece_bytes);
		return 0;
	case WIRE_CANCEL:
		m->u.cancel = (struct wire_block){
		    .chunk = 9, .gen = 0xffffffffffffffffull, .offset = 12, .length = 1};
		return 0;
	case WIRE_REJECT:
		m->u.reject.blk = (struct wire_block){
		    .chunk = 0xffffffff, .gen = 0, .offset = 0x10000, .length = 0x10000};
		m->u.reject.code = WIRE_E_ZERO;
		return 0;
	default:
		return -1;
	}
}

/* Field-by-field equality, following pointers into the payloads. */
static void assert_msg_eq(const struct wire_msg *a, const struct wire_msg *b)
{
	cr_assert_eq(a->type, b->type);
	switch (a->type) {
	case WIRE_AUTH:
		cr_assert_arr_eq(a->u.auth.identity, b->u.auth.identity, WIRE_KEY_LEN);
		cr_assert_eq(a->u.auth.flags, b->u.auth.flags);
		cr_assert_arr_eq(a->u.auth.sig, b->u.auth.sig, WIRE_SIG_LEN);
		break;
	case WIRE_ERROR:
	case WIRE_RECEIPT_ACK:
		cr_assert_eq(a->u.error.code, b->u.error.code);
		cr_assert_eq(a->u.error.text_len, b->u.error.text_len);
		cr_assert_arr_eq(a->u.error.text, b->u.error.text, a->u.error.text_len);
		cr_assert_eq(a->u.error.has_chunk, b->u.error.has_chunk);
		cr_assert_eq(a->u.error.chunk, b->u.error.chunk);
		cr_assert_eq(a->u.error.gen, b->u.error.gen);
		break;
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		cr_assert_eq(a->u.blob.len, b->u.blob.len);
		cr_assert_arr_eq(a->u.blob.data, b->u.blob.data, a->u.blob.len);
		break;
	case WIRE_GET_PAGE:
		cr_assert_eq(a->u.get_page.page, b->u.get_page.page);
		break;
	case WIRE_PAGE:
		cr_assert_eq(a->u.page.page, b->u.page.page);
		cr_assert_eq(a->u.page.root_gen, b->u.page.root_gen);
		cr_assert_eq(a->u.page.len, b->u.page.len);
		cr_assert_arr_eq(a->u.page.data, b->u.page.data, a->u.page.len);
		break;
	case WIRE_HAVE_MAP:
		cr_assert_eq(a->u.have_map.first, b->u.have_map.first);
		cr_assert_eq(a->u.have_map.count, b->u.have_map.count);
		cr_assert_arr_eq(a->u.have_map.bits, b->u.have_map.bits,
		                 (a->u.have_map.count + 7) / 8);
		break;
	case WIRE_HAVE:
		cr_assert_eq(a->u.have.chunk, b->u.have.chunk);
		cr_assert_eq(a->u.have.gen, b->u.have.gen);
		break;
	case WIRE_REQUEST:
		cr_assert_eq(a->u.request.blk.chunk, b->u.request.blk.chunk);
		cr_assert_eq(a->u.request.blk.gen, b->u.request.blk.gen);
		cr_assert_eq(a->u.request.blk.offset, b->u.request.blk.offset);
		cr_assert_eq(a->u.request.blk.length, b->u.request.blk.length);
		cr_assert_eq(a->u.request.prio, b->u.request.prio);
		break;
	case WIRE_PIECE:
		cr_assert_eq(a->u.piece.chunk, b->u.piece.chunk);
		cr_assert_eq(a->u.piece.gen, b->u.piece.gen);
		cr_assert_eq(a->u.piece.offset, b->u.piece.offset);
		cr_assert_eq(a->u.piece.len, b->u.piece.len);
		cr_assert_arr_eq(a->u.piece.data, b->u.piece.data, a->u.piece.len);
		break;
	case WIRE_CANCEL:
		cr_assert_eq(a->u.cancel.chunk, b->u.cancel.chunk);
		cr_assert_eq(a->u.cancel.gen, b->u.cancel.gen);
		cr_assert_eq(a->u.cancel.offset, b->u.cancel.offset);
		cr_assert_eq(a->u.cancel.length, b->u.cancel.length);
		break;
	case WIRE_REJECT:
		cr_assert_eq(a->u.reject.blk.chunk, b->u.reject.blk.chunk);
		cr_assert_eq(a->u.reject.blk.gen, b->u.reject.blk.gen);
		cr_assert_eq(a->u.reject.blk.offset, b->u.reject.blk.offset);
		cr_assert_eq(a->u.reject.blk.length, b->u.reject.blk.length);
		cr_assert_eq(a->u.reject.code, b->u.reject.code);
		break;
	}
}

/* Expected encoded size of each sample, computed by hand from PROTOCOL.md. */
static size_t sample_size(uint8_t type)
{
	switch (type) {
	case WIRE_AUTH:
		return 1 + 32 + 4 + 64;
	case WIRE_ERROR:
	case WIRE_RECEIPT_ACK:
		return 1 + 4 + strlen(err_text);
	case WIRE_KEEPALIVE:
	case WIRE_GET_ROOT:
		return 1;
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		return 1 + sizeof(blob_bytes);
	case WIRE_GET_PAGE:
		return 5;
	case WIRE_PAGE:
		return 1 + 4 + 8 + sizeof(page_bytes);
	case WIRE_HAVE_MAP:
		return 1 + 4 + 4 + 3;
	case WIRE_HAVE:
		return 1 + 4 + 8;
	case WIRE_REQUEST:
		return 22;
	case WIRE_PIECE:
		return 17 + sizeof(piece_bytes);
	case WIRE_CANCEL:
		return 21;
	case WIRE_REJECT:
		return 23;
	}
	return 0;
}

/* Encode into a fresh heap buffer of exactly the right size (so ASan sees overruns). */
static uint8_t *encode_exact(const struct wire_msg *m, size_t *len)
{
	size_t n = wire_msg_size(m);
	cr_assert_gt(n, 0);
	uint8_t *buf = malloc(n);
	cr_assert_not_null(buf);
	cr_assert_eq(wire_msg_encode(m, buf, n), n);
	*len = n;
	return buf;
}

/* Decode a copy of in[0..len) in a heap buffer of exactly len bytes. */
static int decode_exact(const uint8_t *in, size_t len, struct wire_msg *m)
{
	uint8_t *copy = malloc(len ? len : 1);
	cr_assert_not_null(copy);
	memcpy(copy, in, len);
	int rc = wire_msg_decode(copy, len, m);
	free(copy);
	return rc;
}

Test(wire, round_trip_every_type)
{
	for (int t = 1; t <= WIRE_TYPE_MAX; t++) {
		struct wire_msg m, d;
		cr_assert_eq(make_sample((uint8_t)t, &m), 0);
		size_t n;
		uint8_t *buf = encode_exact(&m, &n);
		cr_assert_eq(n, sample_size((uint8_t)t), "type %d size %zu", t, n);
		cr_assert_eq(buf[0], t);
		cr_assert_eq(wire_msg_decode(buf, n, &d), 0, "type %d", t);
		assert_msg_eq(&m, &d);

		/* Re-encoding the decoded message gives the same bytes. */
		uint8_t *again = malloc(n);
		cr_assert_eq(wire_msg_encode(&d, again, n), n);
		cr_assert_arr_eq(again, buf, n);

		/* Every capacity short of the size is refused, without writing past it. */
		for (size_t cap = 0; cap < n; cap++) {
			uint8_t *small = malloc(cap ? cap : 1);
			cr_assert_eq(wire_msg_encode(&m, small, cap), 0, "type %d cap %zu", t, cap);
			free(small);
		}
		free(again);
		free(buf);
	}
}

Test(wire, exact_bytes_request)
{
	struct wire_msg m = {.type = WIRE_REQUEST};
	m.u.request.blk = (struct wire_block){.chunk = 0x01020304,
	                                      .gen = 0x05060708090a0b0cull,
	                                      .offset = 0x0d0e0f10,
	                                      .length = 0x40000};
	m.u.request.prio = 1;
	const uint8_t want[] = {10,   0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
	                        0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x00, 0x04, 0x00, 0x00, 0x01};
	uint8_t buf[64];
	cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), sizeof(want));
	cr_assert_arr_eq(buf, want, sizeof(want));
}

Test(wire, exact_bytes_auth_error_have_map)
{
	struct wire_msg m = {.type = WIRE_AUTH};
	memset(m.u.auth.identity, 0xaa, WIRE_KEY_LEN);
	m.u.auth.flags = WIRE_AUTH_SOURCE;
	memset(m.u.auth.sig, 0xbb, WIRE_SIG_LEN);
	uint8_t buf[128];
	cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), 101);
	cr_assert_eq(buf[0], 1);
	cr_assert_eq(buf[1], 0xaa);
	cr_assert_eq(buf[32], 0xaa);
	const uint8_t flags[4] = {0, 0, 0, 1};
	cr_assert_arr_eq(buf + 33, flags, 4);
	cr_assert_eq(buf[37], 0xbb);
	cr_assert_eq(buf[100], 0xbb);

	m = (struct wire_msg){.type = WIRE_ERROR};
	m.u.error.code = WIRE_E_BUSY;
	m.u.error.text = "hi";
	m.u.error.text_len = 2;
	const uint8_t want_err[] = {2, 0, 10, 0, 2, 'h', 'i'};
	cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), sizeof(want_err));
	cr_assert_arr_eq(buf, want_err, sizeof(want_err));

	/* Chunks 3 and 8 of a 9-chunk map starting at 2: bits 1 and 6. */
	const uint8_t bits[2] = {0x42, 0x00};
	m = (struct wire_msg){.type = WIRE_HAVE_MAP};
	m.u.have_map.first = 2;
	m.u.have_map.count = 9;
	m.u.have_map.bits = bits;
	const uint8_t want_map[] = {8, 0, 0, 0, 2, 0, 0, 0, 9, 0x42, 0x00};
	cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), sizeof(want_map));
	cr_assert_arr_eq(buf, want_map, sizeof(want_map));
}

Test(wire, piece_hdr_matches_encoder)
{
	struct wire_msg m;
	make_sample(WIRE_PIECE, &m);
	size_t n;
	uint8_t *buf = encode_exact(&m, &n);
	uint8_t hdr[WIRE_PIECE_HDR_LEN];
	wire_piece_hdr_encode(hdr, m.u.piece.chunk, m.u.piece.gen, m.u.piece.offset);
	cr_assert_arr_eq(hdr, buf, WIRE_PIECE_HDR_LEN);
	free(buf);
}

/*
 * Which prefixes of a sample are themselves valid messages. Only the types
 * whose last field runs to the end of the message have any; for those the
 * frame is what delimits the message, so a shorter one is still well formed.
 */
static int prefix_valid(uint8_t type, size_t k)
{
	switch (type) {
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		return k >= 2;
	case WIRE_PIECE:
		return k >= 18;
	case WIRE_PAGE:
		return k >= 13 + 48 && (k - 13) % 48 == 0;
	default:
		return 0;
	}
}

Test(wire, every_truncation)
{
	for (int t = 1; t <= WIRE_TYPE_MAX; t++) {
		struct wire_msg m, d;
		make_sample((uint8_t)t, &m);
		size_t n;
		uint8_t *buf = encode_exact(&m, &n);
		for (size_t k = 0; k < n; k++) {
			int rc = decode_exact(buf, k, &d);
			if (prefix_valid((uint8_t)t, k))
				cr_assert_eq(rc, 0, "type %d prefix %zu", t, k);
			else
				cr_assert_eq(rc, WIRE_INVALID, "type %d prefix %zu", t, k);
		}
		free(buf);
	}
}

Test(wire, trailing_bytes)
{
	for (int t = 1; t <= WIRE_TYPE_MAX; t++) {
		struct wire_msg m, d;
		make_sample((uint8_t)t, &m);
		size_t n;
		uint8_t *buf = encode_exact(&m, &n);
		uint8_t *longer = malloc(n + 1);
		memcpy(longer, buf, n);
		longer[n] = 0;
		int rc = decode_exact(longer, n + 1, &d);
		if (t == WIRE_ROOT || t == WIRE_RECEIPT || t == WIRE_DELTA || t == WIRE_PIECE) {
			/* The byte becomes part of the payload. */
			cr_assert_eq(rc, 0, "type %d", t);
		} else {
			cr_assert_eq(rc, WIRE_INVALID, "type %d", t);
		}
		free(longer);
		free(buf);
	}
}

Test(wire, unknown_types)
{
	struct wire_msg d;
	uint8_t buf[32] = {0};
	const int bad[] = {0, 17, 18, 100, 255};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf[0] = (uint8_t)bad[i];
		for (size_t len = 1; len <= sizeof(buf); len++)
			cr_assert_eq(wire_msg_decode(buf, len, &d), WIRE_INVALID, "type %d",
			             bad[i]);
		struct wire_msg m = {.type = (uint8_t)bad[i]};
		cr_assert_eq(wire_msg_size(&m), 0);
		cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), 0);
	}
	cr_assert_eq(wire_msg_decode(buf, 0, &d), WIRE_INVALID);
}

Test(wire, auth_reserved_flags)
{
	struct wire_msg m, d;
	make_sample(WIRE_AUTH, &m);
	uint8_t buf[128];
	size_t n = wire_msg_encode(&m, buf, sizeof(buf));
	cr_assert_eq(n, 101);
	const uint32_t bad[] = {0x2, 0x3, 0x80000000u, 0x100, 0xffffffffu};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		wire_put32(buf + 33, bad[i]);
		cr_assert_eq(wire_msg_decode(buf, n, &d), WIRE_INVALID, "flags %x", bad[i]);
		m.u.auth.flags = bad[i];
		cr_assert_eq(wire_msg_size(&m), 0);
	}
	wire_put32(buf + 33, 0);
	cr_assert_eq(wire_msg_decode(buf, n, &d), 0);
	cr_assert_eq(d.u.auth.flags, 0);
}

Test(wire, block_lengths_out_of_range)
{
	const uint8_t types[] = {WIRE_REQUEST, WIRE_CANCEL, WIRE_REJECT};
	const uint32_t bad_len[] = {0, WIRE_MAX_BLOCK + 1, 0xffffffffu};
	for (size_t i = 0; i < sizeof(types); i++) {
		struct wire_msg m, d;
		make_sample(types[i], &m);
		uint8_t buf[64];
		size_t n = wire_msg_encode(&m, buf, sizeof(buf));
		cr_assert_gt(n, 0);
		/* length is at byte 17 in all three. */
		for (size_t j = 0; j < sizeof(bad_len) / sizeof(bad_len[0]); j++) {
			wire_put32(buf + 17, bad_len[j]);
			cr_assert_eq(wire_msg_decode(buf, n, &d), WIRE_INVALID, "type %d len %u",
			             types[i], bad_len[j]);
		}
		wire_put32(buf + 17, 1);
		cr_assert_eq(wire_msg_decode(buf, n, &d), 0);
		wire_put32(buf + 17, WIRE_MAX_BLOCK);
		cr_assert_eq(wire_msg_decode(buf, n, &d), 0);

		/* Encoder applies the same rule. */
		struct wire_block *b = types[i] == WIRE_REQUEST  ? &m.u.request.blk
		                       : types[i] == WIRE_CANCEL ? &m.u.cancel
		                                                 : &m.u.reject.blk;
		b->length = 0;
		cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), 0);
		b->length = WIRE_MAX_BLOCK + 1;
		cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), 0);
	}
}

Test(wire, offset_length_overflow)
{
	const uint8_t types[] = {WIRE_REQUEST, WIRE_CANCEL, WIRE_REJECT};
	for (size_t i = 0; i < sizeof(types); i++) {
		struct wire_msg m, d;
		make_sample(types[i], &m);
		uint8_t buf[64];
		size_t n = wire_msg_encode(&m, buf, sizeof(buf));
		wire_put32(buf + 13, 0xffffffffu);
		wire_put32(buf + 17, 1);
		cr_assert_eq(wire_msg_decode(buf, n, &d), WIRE_INVALID);
		wire_put32(buf + 13, 0xffffffffu - WIRE_MAX_BLOCK + 1);
		wire_put32(buf + 17, WIRE_MAX_BLOCK);
		cr_assert_eq(wire_msg_decode(buf, n, &d), WIRE_INVALID);
		/* The largest offset that still ends at 2^32 - 1 is fine. */
		wire_put32(buf + 13, 0xffffffffu - WIRE_MAX_BLOCK);
		cr_assert_eq(wire_msg_decode(buf, n, &d), 0);
	}

	struct wire_msg m, d;
	make_sample(WIRE_PIECE, &m);
	m.u.piece.offset = 0xffffffffu - (uint32_t)sizeof(piece_bytes) + 1;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.piece.offset = 0xffffffffu - (uint32_t)sizeof(piece_bytes);
	size_t n;
	uint8_t *buf = encode_exact(&m, &n);
	cr_assert_eq(wire_msg_decode(buf, n, &d), 0);
	wire_put32(buf + 13, 0xffffffffu);
	cr_assert_eq(wire_msg_decode(buf, n, &d), WIRE_INVALID);
	free(buf);
}

Test(wire, request_priority)
{
	struct wire_msg m, d;
	make_sample(WIRE_REQUEST, &m);
	uint8_t buf[64];
	size_t n = wire_msg_encode(&m, buf, sizeof(buf));
	for (int p = 0; p < 256; p++) {
		buf[21] = (uint8_t)p;
		int rc = wire_msg_decode(buf, n, &d);
		if (p <= WIRE_PRIO_URGENT) {
			cr_assert_eq(rc, 0);
			cr_assert_eq(d.u.request.prio, p);
		} else {
			cr_assert_eq(rc, WIRE_INVALID, "prio %d", p);
		}
	}
	m.u.request.prio = 3;
	cr_assert_eq(wire_msg_size(&m), 0);
}

Test(wire, piece_sizes)
{
	uint8_t *buf = calloc(1, BUF_LEN);
	struct wire_msg d;
	buf[0] = WIRE_PIECE;
	cr_assert_eq(wire_msg_decode(buf, 17, &d), WIRE_INVALID); /* no data */
	cr_assert_eq(wire_msg_decode(buf, 18, &d), 0);
	cr_assert_eq(d.u.piece.len, 1);
	cr_assert_eq(d.u.piece.data, buf + 17);
	cr_assert_eq(wire_msg_decode(buf, 17 + WIRE_MAX_BLOCK, &d), 0);
	cr_assert_eq(d.u.piece.len, WIRE_MAX_BLOCK);
	cr_assert_eq(wire_msg_decode(buf, 17 + WIRE_MAX_BLOCK + 1, &d), WIRE_INVALID);

	struct wire_msg m = {.type = WIRE_PIECE};
	m.u.piece.data = buf;
	m.u.piece.len = WIRE_MAX_BLOCK + 1;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.piece.len = 0;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.piece.len = 1;
	m.u.piece.data = NULL;
	cr_assert_eq(wire_msg_size(&m), 0);
	free(buf);
}

Test(wire, page_sizes)
{
	size_t cap = 13 + 1025 * 48 + 48;
	uint8_t *buf = calloc(1, cap);
	struct wire_msg d;
	buf[0] = WIRE_PAGE;
	cr_assert_eq(wire_msg_decode(buf, 13, &d), WIRE_INVALID); /* zero entries */
	cr_assert_eq(wire_msg_decode(buf, 13 + 47, &d), WIRE_INVALID);
	cr_assert_eq(wire_msg_decode(buf, 13 + 48, &d), 0);
	cr_assert_eq(d.u.page.len, 48);
	cr_assert_eq(wire_msg_decode(buf, 13 + 49, &d), WIRE_INVALID);
	cr_assert_eq(wire_msg_decode(buf, 13 + 1024 * 48, &d), 0);
	cr_assert_eq(d.u.page.len, 1024 * 48);
	cr_assert_eq(wire_msg_decode(buf, 13 + 1025 * 48, &d), WIRE_INVALID);

	struct wire_msg m = {.type = WIRE_PAGE};
	m.u.page.data = buf;
	m.u.page.len = 1025 * 48;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.page.len = 50;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.page.len = 0;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.page.len = 1024 * 48;
	cr_assert_eq(wire_msg_size(&m), 13 + 1024 * 48);
	free(buf);
}

Test(wire, blob_and_message_size_limit)
{
	uint8_t *buf = calloc(1, BUF_LEN);
	struct wire_msg d;
	const uint8_t types[] = {WIRE_ROOT, WIRE_RECEIPT, WIRE_DELTA};
	for (size_t i = 0; i < sizeof(types); i++) {
		buf[0] = types[i];
		cr_assert_eq(wire_msg_decode(buf, 1, &d), WIRE_INVALID); /* empty blob */
		cr_assert_eq(wire_msg_decode(buf, WIRE_MAX_MSG, &d), 0);
		cr_assert_eq(d.u.blob.len, WIRE_MAX_MSG - 1);
		cr_assert_eq(wire_msg_decode(buf, WIRE_MAX_MSG + 1, &d), WIRE_INVALID);

		struct wire_msg m = {.type = types[i]};
		m.u.blob.data = buf;
		m.u.blob.len = WIRE_MAX_MSG - 1;
		cr_assert_eq(wire_msg_size(&m), WIRE_MAX_MSG);
		m.u.blob.len = WIRE_MAX_MSG;
		cr_assert_eq(wire_msg_size(&m), 0);
		m.u.blob.len = 0;
		cr_assert_eq(wire_msg_size(&m), 0);
	}
	/* Even an otherwise valid type is refused past the limit. */
	buf[0] = WIRE_KEEPALIVE;
	cr_assert_eq(wire_msg_decode(buf, WIRE_MAX_MSG + 1, &d), WIRE_INVALID);
	free(buf);
}

Test(wire, error_text_limits)
{
	uint8_t *buf = calloc(1, 1 + 4 + 600);
	struct wire_msg d;
	const uint8_t types[] = {WIRE_ERROR, WIRE_RECEIPT_ACK};
	for (size_t i = 0; i < sizeof(types); i++) {
		buf[0] = types[i];
		wire_put16(buf + 1, WIRE_E_RANGE);
		memset(buf + 5, 'x', 600);
		wire_put16(buf + 3, 512);
		cr_assert_eq(wire_msg_decode(buf, 5 + 512, &d), 0);
		cr_assert_eq(d.u.error.text_len, 512);
		cr_assert_eq(d.u.error.code, WIRE_E_RANGE);
		cr_assert_eq((const uint8_t *)d.u.error.text, buf + 5);
		wire_put16(buf + 3, 513);
		cr_assert_eq(wire_msg_decode(buf, 5 + 513, &d), WIRE_INVALID);
		/* text_len disagreeing with the message length either way */
		wire_put16(buf + 3, 10);
		cr_assert_eq(wire_msg_decode(buf, 5 + 9, &d), WIRE_INVALID);
		cr_assert_eq(wire_msg_decode(buf, 5 + 11, &d), WIRE_INVALID);
		cr_assert_eq(wire_msg_decode(buf, 5 + 10, &d), 0);
		/* empty text is fine */
		wire_put16(buf + 3, 0);
		cr_assert_eq(wire_msg_decode(buf, 5, &d), 0);
		cr_assert_eq(d.u.error.text_len, 0);

		struct wire_msg m = {.type = types[i]};
		m.u.error.text = (const char *)buf + 5;
		m.u.error.text_len = 513;
		cr_assert_eq(wire_msg_size(&m), 0);
		m.u.error.text_len = 1;
		m.u.error.text = NULL;
		cr_assert_eq(wire_msg_size(&m), 0);
		m.u.error.text_len = 0;
		cr_assert_eq(wire_msg_size(&m), 5);
	}
	free(buf);
}

/* ERROR E_BAD_DATA may name the chunk that failed verification (PROTOCOL.md §6.2). */
Test(wire, error_names_a_chunk)
{
	struct wire_msg m = {.type = WIRE_ERROR}, d;
	uint8_t buf[64];
	const uint8_t want[] = {2,    0,    15,   0,    3,    'b',  'a',  'd',  0x01, 0x02,
	                        0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11};

	m.u.error.code = WIRE_E_BAD_DATA;
	m.u.error.text = "bad";
	m.u.error.text_len = 3;
	m.u.error.has_chunk = 1;
	m.u.error.chunk = 0x01020304;
	m.u.error.gen = 0x0a0b0c0d0e0f1011ull;
	cr_assert_eq(wire_msg_size(&m), sizeof(want));
	cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), sizeof(want));
	cr_assert_arr_eq(buf, want, sizeof(want));
	cr_assert_eq(wire_msg_decode(want, sizeof(want), &d), 0);
	assert_msg_eq(&m, &d);
	cr_assert_eq((const uint8_t *)d.u.error.text, want + 5);

	/* The form without a chunk (what older peers send) still decodes, without one. */
	cr_assert_eq(decode_exact(want, 8, &d), 0);
	cr_assert_eq(d.u.error.has_chunk, 0);
	cr_assert_eq(d.u.error.code, WIRE_E_BAD_DATA);
	cr_assert_eq(d.u.error.text_len, 3);

	/* Every other length is malformed: a cut chunk field, or a byte too many. */
	for (size_t n = 1; n < sizeof(want); n++)
		if (n != 8)
			cr_assert_eq(decode_exact(want, n, &d), WIRE_INVALID, "length %zu", n);
	memcpy(buf, want, sizeof(want));
	buf[sizeof(want)] = 0;
	cr_assert_eq(decode_exact(buf, sizeof(want) + 1, &d), WIRE_INVALID);

	/* Only ERROR, only E_BAD_DATA: another code, or RECEIPT_ACK, with the field is refused. */
	buf[2] = WIRE_E_RANGE;
	cr_assert_eq(decode_exact(buf, sizeof(want), &d), WIRE_INVALID);
	buf[2] = WIRE_E_BAD_DATA;
	buf[0] = WIRE_RECEIPT_ACK;
	cr_assert_eq(decode_exact(buf, sizeof(want), &d), WIRE_INVALID);
	buf[0] = WIRE_ERROR;
	cr_assert_eq(decode_exact(buf, sizeof(want), &d), 0);

	/* ...and the encoder refuses to make what the decoder would refuse. */
	m.u.error.code = WIRE_E_RANGE;
	cr_assert_eq(wire_msg_size(&m), 0);
	cr_assert_eq(wire_msg_encode(&m, buf, sizeof(buf)), 0);
	m.u.error.code = WIRE_E_BAD_DATA;
	m.type = WIRE_RECEIPT_ACK;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.type = WIRE_ERROR;
	/* Every capacity short of the size is refused. */
	for (size_t cap = 0; cap < sizeof(want); cap++)
		cr_assert_eq(wire_msg_encode(&m, buf, cap), 0, "cap %zu", cap);

	/* With the longest text the message is 5 + 512 + 12 bytes. */
	{
		static char text[WIRE_MAX_TEXT];
		uint8_t *big = malloc(1 + 4 + WIRE_MAX_TEXT + WIRE_ERROR_CHUNK_LEN);

		memset(text, 'x', sizeof(text));
		m.u.error.text = text;
		m.u.error.text_len = WIRE_MAX_TEXT;
		cr_assert_eq(wire_msg_size(&m), 529);
		cr_assert_eq(wire_msg_encode(&m, big, 529), 529);
		cr_assert_eq(wire_msg_decode(big, 529, &d), 0);
		assert_msg_eq(&m, &d);
		free(big);
	}
}

Test(wire, have_map_rules)
{
	struct wire_msg d;
	uint8_t buf[64] = {WIRE_HAVE_MAP};

	/* count 0 */
	wire_put32(buf + 1, 0);
	wire_put32(buf + 5, 0);
	cr_assert_eq(wire_msg_decode(buf, 9, &d), WIRE_INVALID);
	cr_assert_eq(wire_msg_decode(buf, 10, &d), WIRE_INVALID);

	/* 8 bits: one full byte, any value */
	wire_put32(buf + 5, 8);
	buf[9] = 0xff;
	cr_assert_eq(wire_msg_decode(buf, 10, &d), 0);
	cr_assert_eq(d.u.have_map.count, 8);
	cr_assert_eq(d.u.have_map.bits[0], 0xff);
	cr_assert_eq(wire_msg_decode(buf, 11, &d), WIRE_INVALID); /* one byte too many */

	/* 9 bits: bit 0 of byte 1 is used, bits 1..7 must be clear */
	wire_put32(buf + 5, 9);
	buf[10] = 0x01;
	cr_assert_eq(wire_msg_decode(buf, 11, &d), 0);
	cr_assert_eq(wire_msg_decode(buf, 10, &d), WIRE_INVALID); /* one byte short */
	for (int bit = 1; bit < 8; bit++) {
		buf[10] = (uint8_t)(0x01 | (1u << bit));
		cr_assert_eq(wire_msg_decode(buf, 11, &d), WIRE_INVALID, "bit %d", bit);
	}
	buf[10] = 0x01;

	/* first + count must not pass 2^32 - 1 */
	wire_put32(buf + 1, 0xffffffffu - 9);
	cr_assert_eq(wire_msg_decode(buf, 11, &d), 0);
	wire_put32(buf + 1, 0xffffffffu - 8);
	cr_assert_eq(wire_msg_decode(buf, 11, &d), WIRE_INVALID);
	wire_put32(buf + 1, 0xffffffffu);
	cr_assert_eq(wire_msg_decode(buf, 11, &d), WIRE_INVALID);

	/* A huge count whose bitmap cannot be there (and whose byte count would overflow u32 math).
	 */
	wire_put32(buf + 1, 0);
	wire_put32(buf + 5, 0xffffffffu);
	cr_assert_eq(wire_msg_decode(buf, sizeof(buf), &d), WIRE_INVALID);

	/* Encoder: same rules. */
	uint8_t bits[2] = {0xff, 0x02};
	struct wire_msg m = {.type = WIRE_HAVE_MAP};
	m.u.have_map.first = 0;
	m.u.have_map.count = 9;
	m.u.have_map.bits = bits;
	cr_assert_eq(wire_msg_size(&m), 0); /* bit past count set */
	bits[1] = 0x01;
	cr_assert_eq(wire_msg_size(&m), 11);
	m.u.have_map.first = 0xfffffff8u;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.have_map.first = 0;
	m.u.have_map.count = 0;
	cr_assert_eq(wire_msg_size(&m), 0);
	m.u.have_map.count = 9;
	m.u.have_map.bits = NULL;
	cr_assert_eq(wire_msg_size(&m), 0);
}

Test(wire, have_map_largest)
{
	/* The largest map that fits one message. */
	size_t nbytes = WIRE_MAX_MSG - 9;
	uint8_t *buf = calloc(1, WIRE_MAX_MSG + 1);
	struct wire_msg d;
	buf[0] = WIRE_HAVE_MAP;
	wire_put32(buf + 5, (uint32_t)(nbytes * 8));
	cr_assert_eq(wire_msg_decode(buf, WIRE_MAX_MSG, &d), 0);
	cr_assert_eq(d.u.have_map.count, nbytes * 8);
	struct wire_msg m = d;
	cr_assert_eq(wire_msg_size(&m), WIRE_MAX_MSG);
	m.u.have_map.count = (uint32_t)(nbytes * 8 + 1);
	cr_assert_eq(wire_msg_size(&m), 0);
	free(buf);
}

Test(wire, empty_and_fixed_bodies)
{
	struct wire_msg d;
	uint8_t buf[32] = {0};
	buf[0] = WIRE_KEEPALIVE;
	cr_assert_eq(wire_msg_decode(buf, 1, &d), 0);
	cr_assert_eq(d.type, WIRE_KEEPALIVE);
	cr_assert_eq(wire_msg_decode(buf, 2, &d), WIRE_INVALID);
	buf[0] = WIRE_GET_ROOT;
	cr_assert_eq(wire_msg_decode(buf, 1, &d), 0);
	cr_assert_eq(wire_msg_decode(buf, 2, &d), WIRE_INVALID);
	buf[0] = WIRE_GET_PAGE;
	wire_put32(buf + 1, 0xcafef00d);
	cr_assert_eq(wire_msg_decode(buf, 5, &d), 0);
	cr_assert_eq(d.u.get_page.page, 0xcafef00d);
	buf[0] = WIRE_HAVE;
	wire_put32(buf + 1, 42);
	wire_put64(buf + 5, 0x8000000000000001ull);
	cr_assert_eq(wire_msg_decode(buf, 13, &d), 0);
	cr_assert_eq(d.u.have.chunk, 42);
	cr_assert_eq(d.u.have.gen, 0x8000000000000001ull);
}

/* A sample hello with distinct bytes in every field. */
static void make_hello(struct wire_hello *h)
{
	memset(h, 0, sizeof(*h));
	h->min_version = 1;
	h->max_version = 0x0203;
	fill_pattern(h->volume_id, WIRE_ID_LEN, 0x40);
	fill_pattern(h->source_key, WIRE_KEY_LEN, 0x80);
	fill_pattern(h->kx_key, WIRE_KEY_LEN, 0xc0);
}

Test(wire, hello_round_trip)
{
	struct wire_hello h, d;
	make_hello(&h);
	uint8_t buf[WIRE_HELLO_LEN];
	wire_hello_encode(&h, buf);
	cr_assert_arr_eq(buf, "P2PVBD1\n", 8);
	const uint8_t ver[8] = {0, 1, 2, 3, 0, 0, 0, 0};
	cr_assert_arr_eq(buf + 8, ver, 8);
	cr_assert_arr_eq(buf + 16, h.volume_id, 16);
	cr_assert_arr_eq(buf + 32, h.source_key, 32);
	cr_assert_arr_eq(buf + 64, h.kx_key, 32);

	cr_assert_eq(wire_hello_decode(buf, sizeof(buf), &d), 0);
	cr_assert_eq(d.min_version, 1);
	cr_assert_eq(d.max_version, 0x0203);
	cr_assert_eq(d.flags, 0);
	cr_assert_arr_eq(d.volume_id, h.volume_id, WIRE_ID_LEN);
	cr_assert_arr_eq(d.source_key, h.source_key, WIRE_KEY_LEN);
	cr_assert_arr_eq(d.kx_key, h.kx_key, WIRE_KEY_LEN);
}

Test(wire, hello_malformed)
{
	struct wire_hello h, d;
	make_hello(&h);
	uint8_t buf[WIRE_HELLO_LEN + 1];
	wire_hello_encode(&h, buf);
	buf[WIRE_HELLO_LEN] = 0;

	for (size_t k = 0; k < WIRE_HELLO_LEN; k++)
		cr_assert_eq(wire_hello_decode(buf, k, &d), WIRE_INVALID, "len %zu", k);
	cr_assert_eq(wire_hello_decode(buf, WIRE_HELLO_LEN + 1, &d), WIRE_INVALID);

	/* Any change in the magic. */
	for (size_t i = 0; i < WIRE_MAGIC_LEN; i++) {
		uint8_t c = buf[i];
		buf[i] ^= 0x20;
		cr_assert_eq(wire_hello_decode(buf, WIRE_HELLO_LEN, &d), WIRE_INVALID, "byte %zu",
		             i);
		buf[i] = c;
	}
	/* A refusal is not a hello. */
	memcpy(buf, WIRE_REFUSE_MAGIC, 8);
	cr_assert_eq(wire_hello_decode(buf, WIRE_HELLO_LEN, &d), WIRE_INVALID);
	memcpy(buf, WIRE_HELLO_MAGIC, 8);

	/* Reserved flags. */
	for (int bit = 0; bit < 32; bit++) {
		wire_put32(buf + 12, 1u << bit);
		cr_assert_eq(wire_hello_decode(buf, WIRE_HELLO_LEN, &d), WIRE_INVALID, "bit %d",
		             bit);
	}
	wire_put32(buf + 12, 0);
	cr_assert_eq(wire_hello_decode(buf, WIRE_HELLO_LEN, &d), 0);

	/* Version ranges are the caller's to judge: decode passes them through. */
	wire_put16(buf + 8, 5);
	wire_put16(buf + 10, 2);
	cr_assert_eq(wire_hello_decode(buf, WIRE_HELLO_LEN, &d), 0);
	cr_assert_eq(d.min_version, 5);
	cr_assert_eq(d.max_version, 2);
}

Test(wire, refusal_round_trip)
{
	uint8_t buf[600];
	size_t n = wire_refuse_encode(WIRE_E_WRONG_VOLUME, "no such volume", buf, sizeof(buf));
	cr_assert_eq(n, 12 + 14);
	const uint8_t hdr[12] = {'P', '2', 'P', 'V', 'B', 'D', '!', '\n', 0, 3, 0, 14};
	cr_assert_arr_eq(buf, hdr, 12);
	cr_assert_arr_eq(buf + 12, "no such volume", 14);

	uint16_t code = 0, tlen = 0;
	const char *text = NULL;
	cr_assert_eq(wire_refuse_decode(buf, n, &code, &text, &tlen), (int)n);
	cr_assert_eq(code, WIRE_E_WRONG_VOLUME);
	cr_assert_eq(tlen, 14);
	cr_assert_eq((const uint8_t *)text, buf + 12);

	/* Bytes after the record are not consumed. */
	cr_assert_eq(wire_refuse_decode(buf, sizeof(buf), &code, &text, &tlen), (int)n);

	/* Empty and NULL text. */
	n = wire_refuse_encode(WIRE_E_VERSION, NULL, buf, sizeof(buf));
	cr_assert_eq(n, 12);
	cr_assert_eq(wire_refuse_decode(buf, n, &code, &text, &tlen), 12);
	cr_assert_eq(code, WIRE_E_VERSION);
	cr_assert_eq(tlen, 0);

	/* Capacity too small. */
	cr_assert_eq(wire_refuse_encode(WIRE_E_VERSION, "abc", buf, 14), 0);
	cr_assert_eq(wire_refuse_encode(WIRE_E_VERSION, "abc", buf, 15), 15);
}

Test(wire, refusal_need_more)
{
	uint8_t buf[64];
	size_t n = wire_refuse_encode(WIRE_E_WRONG_KEY, "source key differs", buf, sizeof(buf));
	cr_assert_gt(n, 12);
	uint16_t code;
	const char *text;
	uint16_t tlen;
	for (size_t k = 0; k < n; k++) {
		uint8_t *copy = malloc(k ? k : 1);
		memcpy(copy, buf, k);
		cr_assert_eq(wire_refuse_decode(copy, k, &code, &text, &tlen), WIRE_NEED_MORE,
		             "prefix %zu", k);
		free(copy);
	}
	cr_assert_eq(wire_refuse_decode(buf, n, &code, &text, &tlen), (int)n);
}

Test(wire, refusal_malformed)
{
	uint8_t buf[12 + 600] = {0};
	uint16_t code;
	const char *text;
	uint16_t tlen;
	size_t n = wire_refuse_encode(WIRE_E_AUTH, "x", buf, sizeof(buf));

	/* A wrong magic is reported as soon as the wrong byte is there. */
	for (size_t i = 0; i < WIRE_MAGIC_LEN; i++) {
		uint8_t c = buf[i];
		buf[i] ^= 0x01;
		for (size_t k = i + 1; k <= n; k++)
			cr_assert_eq(wire_refuse_decode(buf, k, &code, &text, &tlen), WIRE_INVALID,
			             "byte %zu prefix %zu", i, k);
		buf[i] = c;
	}
	/* A hello is not a refusal. */
	memcpy(buf, WIRE_HELLO_MAGIC, 8);
	cr_assert_eq(wire_refuse_decode(buf, n, &code, &text, &tlen), WIRE_INVALID);
	cr_assert_eq(wire_refuse_decode(buf, 7, &code, &text, &tlen), WIRE_INVALID);
	memcpy(buf, WIRE_REFUSE_MAGIC, 8);

	/* text_len above the limit is invalid even before the text arrives. */
	wire_put16(buf + 10, WIRE_MAX_TEXT + 1);
	cr_assert_eq(wire_refuse_decode(buf, 12, &code, &text, &tlen), WIRE_INVALID);
	cr_assert_eq(wire_refuse_decode(buf, sizeof(buf), &code, &text, &tlen), WIRE_INVALID);
	wire_put16(buf + 10, 0xffff);
	cr_assert_eq(wire_refuse_decode(buf, sizeof(buf), &code, &text, &tlen), WIRE_INVALID);
	wire_put16(buf + 10, WIRE_MAX_TEXT);
	cr_assert_eq(wire_refuse_decode(buf, 12 + WIRE_MAX_TEXT - 1, &code, &text, &tlen),
	             WIRE_NEED_MORE);
	cr_assert_eq(wire_refuse_decode(buf, 12 + WIRE_MAX_TEXT, &code, &text, &tlen),
	             12 + WIRE_MAX_TEXT);
}

Test(wire, refusal_truncates_long_text)
{
	char text[700];
	memset(text, 'a', sizeof(text) - 1);
	text[sizeof(text) - 1] = 0;
	uint8_t buf[800];
	size_t n = wire_refuse_encode(WIRE_E_PROTOCOL, text, buf, sizeof(buf));
	cr_assert_eq(n, 12 + WIRE_MAX_TEXT);
	cr_assert_eq(wire_get16(buf + 10), WIRE_MAX_TEXT);

	/* A 2-byte character straddling byte 512 is dropped whole, not cut in half. */
	text[510] = 'b';
	text[511] = (char)0xc3;
	text[512] = (char)0xa9;
	n = wire_refuse_encode(WIRE_E_PROTOCOL, text, buf, sizeof(buf));
	cr_assert_eq(n, 12 + 511);
	cr_assert_eq(buf[12 + 510], 'b');

	/* A 3-byte character whose last byte would be byte 513. */
	text[510] = (char)0xe2;
	text[511] = (char)0x82;
	text[512] = (char)0xac;
	n = wire_refuse_encode(WIRE_E_PROTOCOL, text, buf, sizeof(buf));
	cr_assert_eq(n, 12 + 510);

	/* A character ending exactly at byte 512 is kept. */
	text[509] = (char)0xe2;
	text[510] = (char)0x82;
	text[511] = (char)0xac;
	text[512] = 'c';
	n = wire_refuse_encode(WIRE_E_PROTOCOL, text, buf, sizeof(buf));
	cr_assert_eq(n, 12 + 512);
}

Test(wire, frame_len)
{
	uint8_t h[4];
	const struct {
		uint32_t v;
		int64_t want;
	} cases[] = {
	    {0, WIRE_INVALID},
	    {1, WIRE_INVALID},
	    {16, WIRE_INVALID},
	    {17, 17},
	    {1000, 1000},
	    {WIRE_MAX_MSG + 16, WIRE_MAX_MSG + 16},
	    {WIRE_MAX_MSG + 17, WIRE_INVALID},
	    {0x80000000u, WIRE_INVALID},
	    {0xffffffffu, WIRE_INVALID},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wire_put32(h, cases[i].v);
		cr_assert_eq(wire_frame_len(h), cases[i].want, "L=%u", cases[i].v);
	}
	/* Big-endian. */
	const uint8_t be[4] = {0x00, 0x00, 0x01, 0x02};
	cr_assert_eq(wire_frame_len(be), 0x102);
}

Test(wire, byte_order_helpers)
{
	uint8_t b[8];
	wire_put64(b, 0x0102030405060708ull);
	const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	cr_assert_arr_eq(b, want, 8);
	cr_assert_eq(wire_get64(b), 0x0102030405060708ull);
	cr_assert_eq(wire_get32(b + 4), 0x05060708u);
	cr_assert_eq(wire_get16(b + 6), 0x0708);
	wire_put32(b, 0xffffffffu);
	cr_assert_eq(wire_get32(b), 0xffffffffu);
}

Test(wire, names)
{
	cr_assert_str_eq(wire_type_name(WIRE_REQUEST), "REQUEST");
	cr_assert_str_eq(wire_type_name(WIRE_RECEIPT_ACK), "RECEIPT_ACK");
	cr_assert_str_eq(wire_type_name(WIRE_DELTA), "DELTA");
	cr_assert_str_eq(wire_type_name(0), "UNKNOWN");
	cr_assert_str_eq(wire_type_name(17), "UNKNOWN");
	cr_assert_str_eq(wire_type_name(255), "UNKNOWN");
	cr_assert_str_eq(wire_code_name(WIRE_OK), "OK");
	cr_assert_str_eq(wire_code_name(WIRE_E_RANGE), "E_RANGE");
	cr_assert_str_eq(wire_code_name(WIRE_E_BAD_DATA), "E_BAD_DATA");
	cr_assert_str_eq(wire_code_name(16), "UNKNOWN");
	cr_assert_str_eq(wire_code_name(0xffff), "UNKNOWN");
	for (int t = 1; t <= WIRE_TYPE_MAX; t++)
		cr_assert_str_neq(wire_type_name((uint8_t)t), "UNKNOWN");
}
