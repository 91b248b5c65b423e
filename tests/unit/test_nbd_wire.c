/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for proto/nbd_wire.c. Expected bytes are written out by hand
 * from the NBD spec (doc/proto.md), never taken from the encoder's output,
 * so that a field in the wrong place or byte order cannot pass. Decoders are
 * fed every truncation, trailing bytes and bad magics; each validation rule
 * is checked for the errno the spec names.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "nbd_wire.h"

#define BUF_LEN 8192

static void expect_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len)
{
	cr_assert_eq(got_len, want_len, "length %zu, want %zu", got_len, want_len);
	for (size_t i = 0; i < want_len; i++)
		cr_assert_eq(got[i], want[i], "byte %zu: 0x%02x, want 0x%02x", i, got[i], want[i]);
}

/* ---------------------------------------------------------------------- */
/* Handshake                                                              */
/* ---------------------------------------------------------------------- */

Test(nbd_wire, greeting_bytes)
{
	/* clang-format off */
	static const uint8_t want[] = {
		'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C', /* 0x4e42444d41474943 */
		'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', /* 0x49484156454F5054 */
		0x00, 0x03,                             /* FIXED_NEWSTYLE | NO_ZEROES */
	};
	/* clang-format on */
	uint8_t out[NBDW_GREETING_LEN];

	nbdw_greeting_encode(out);
	expect_bytes(out, sizeof(out), want, sizeof(want));
}

Test(nbd_wire, client_flags)
{
	uint32_t f = 99;
	uint8_t b[5] = {0, 0, 0, 3, 0};

	cr_assert_eq(nbdw_client_flags_decode(b, 4, &f), 0);
	cr_assert_eq(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	b[3] = 1;
	cr_assert_eq(nbdw_client_flags_decode(b, 4, &f), 0);
	cr_assert_eq(f, NBD_FLAG_C_FIXED_NEWSTYLE);
	b[3] = 0;
	cr_assert_eq(nbdw_client_flags_decode(b, 4, &f), 0); /* non-fixed client: caller decides */
	cr_assert_eq(f, 0);

	/* Unknown bits: the server MUST drop the connection. */
	for (int bit = 2; bit < 32; bit++) {
		uint8_t u[4] = {0, 0, 0, 0};
		u[3 - bit / 8] = (uint8_t)(1u << (bit % 8));
		cr_assert_eq(nbdw_client_flags_decode(u, 4, &f), NBDW_INVALID, "bit %d", bit);
	}
	/* Exactly 4 bytes. */
	b[3] = 1;
	for (size_t n = 0; n < 4; n++)
		cr_assert_eq(nbdw_client_flags_decode(b, n, &f), NBDW_INVALID);
	cr_assert_eq(nbdw_client_flags_decode(b, 5, &f), NBDW_INVALID);
}

/* ---------------------------------------------------------------------- */
/* Option header                                                          */
/* ---------------------------------------------------------------------- */

/* clang-format off */
static const uint8_t opt_go_hdr[] = {
	0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54, /* IHAVEOPT */
	0x00, 0x00, 0x00, 0x07,                         /* NBD_OPT_GO */
	0x00, 0x00, 0x01, 0x02,                         /* 258 bytes of data */
};
/* clang-format on */

Test(nbd_wire, opt_header_decode)
{
	struct nbdw_opt_header h;

	cr_assert_eq(nbdw_opt_header_decode(opt_go_hdr, sizeof(opt_go_hdr), 4096, &h), 0);
	cr_assert_eq(h.option, NBD_OPT_GO);
	cr_assert_eq(h.len, 258);
	cr_assert_eq(nbdw_opt_header_decode(opt_go_hdr, sizeof(opt_go_hdr), 258, &h), 0);
}

Test(nbd_wire, opt_header_too_big)
{
	struct nbdw_opt_header h = {0, 0};

	cr_assert_eq(nbdw_opt_header_decode(opt_go_hdr, sizeof(opt_go_hdr), 257, &h), NBDW_TOO_BIG);
	/* The header is still filled, so the caller can skip the data and reply. */
	cr_assert_eq(h.option, NBD_OPT_GO);
	cr_assert_eq(h.len, 258);

	uint8_t big[16];
	memcpy(big, opt_go_hdr, 16);
	big[12] = 0xff, big[13] = 0xff, big[14] = 0xff, big[15] = 0xff;
	cr_assert_eq(nbdw_opt_header_decode(big, 16, NBDW_MAX_OPTION_LEN, &h), NBDW_TOO_BIG);
	cr_assert_eq(h.len, 0xffffffffu);
}

Test(nbd_wire, opt_header_truncated_trailing_bad_magic)
{
	struct nbdw_opt_header h;
	uint8_t b[17];

	memcpy(b, opt_go_hdr, 16);
	b[16] = 0;
	for (size_t n = 0; n < 16; n++)
		cr_assert_eq(nbdw_opt_header_decode(b, n, 4096, &h), NBDW_INVALID, "len %zu", n);
	cr_assert_eq(nbdw_opt_header_decode(b, 17, 4096, &h), NBDW_INVALID);
	for (size_t i = 0; i < 8; i++) {
		memcpy(b, opt_go_hdr, 16);
		b[i] ^= 0x20;
		cr_assert_eq(nbdw_opt_header_decode(b, 16, 4096, &h), NBDW_INVALID, "byte %zu", i);
	}
	/* NBDMAGIC where IHAVEOPT belongs. */
	memcpy(b, "NBDMAGIC", 8);
	cr_assert_eq(nbdw_opt_header_decode(b, 16, 4096, &h), NBDW_INVALID);
}

/* ---------------------------------------------------------------------- */
/* Option data                                                            */
/* ---------------------------------------------------------------------- */

Test(nbd_wire, export_name_parse)
{
	struct nbdw_str s;
	static uint8_t name[NBDW_MAX_STRING + 1];

	cr_assert_eq(nbdw_opt_export_name_parse((const uint8_t *)"disk0", 5, &s), 0);
	cr_assert_eq(s.len, 5);
	cr_assert(memcmp(s.ptr, "disk0", 5) == 0);

	cr_assert_eq(nbdw_opt_export_name_parse((const uint8_t *)"", 0, &s), 0); /* default */
	cr_assert_eq(s.len, 0);
	cr_assert_null(s.ptr);

	cr_assert_eq(nbdw_opt_export_name_parse((const uint8_t *)"a\0b", 3, &s), NBDW_INVALID);

	memset(name, 'x', sizeof(name));
	cr_assert_eq(nbdw_opt_export_name_parse(name, NBDW_MAX_STRING, &s), 0);
	cr_assert_eq(s.ptr, (const char *)name);
	cr_assert_eq(nbdw_opt_export_name_parse(name, NBDW_MAX_STRING + 1, &s), NBDW_INVALID);
}

/* NBD_OPT_GO data: name "abc", two requests: BLOCK_SIZE, EXPORT. */
/* clang-format off */
static const uint8_t go_data[] = {
	0x00, 0x00, 0x00, 0x03, 'a', 'b', 'c', /* u32 name length, name */
	0x00, 0x02,                            /* two information requests */
	0x00, 0x03,                            /* NBD_INFO_BLOCK_SIZE */
	0x00, 0x00,                            /* NBD_INFO_EXPORT */
};
/* clang-format on */

Test(nbd_wire, go_parse)
{
	struct nbdw_opt_go go;

	cr_assert_eq(nbdw_opt_go_parse(go_data, sizeof(go_data), &go), 0);
	cr_assert_eq(go.name.len, 3);
	cr_assert_eq(go.name.ptr, (const char *)go_data + 4);
	cr_assert_eq(go.n_info, 2);
	cr_assert_eq(nbdw_opt_go_info(&go, 0), NBD_INFO_BLOCK_SIZE);
	cr_assert_eq(nbdw_opt_go_info(&go, 1), NBD_INFO_EXPORT);
	cr_assert_eq(go.info_mask, (1u << NBD_INFO_BLOCK_SIZE) | (1u << NBD_INFO_EXPORT));
}

Test(nbd_wire, go_parse_minimal_and_unknown_info)
{
	struct nbdw_opt_go go;
	/* Default export, no requests: the shortest legal GO. */
	static const uint8_t empty[] = {0, 0, 0, 0, 0, 0};
	/* Unknown request types are ignored (even repeated); known ones recorded. */
	static const uint8_t unk[] = {0, 0, 0, 0, 0, 4, 0x12, 0x34, 0x12, 0x34, 0, 2, 0xff, 0xff};

	cr_assert_eq(nbdw_opt_go_parse(empty, sizeof(empty), &go), 0);
	cr_assert_eq(go.name.len, 0);
	cr_assert_eq(go.n_info, 0);
	cr_assert_eq(go.info_mask, 0);

	cr_assert_eq(nbdw_opt_go_parse(unk, sizeof(unk), &go), 0);
	cr_assert_eq(go.n_info, 4);
	cr_assert_eq(go.info_mask, 1u << NBD_INFO_DESCRIPTION);
	cr_assert_eq(nbdw_opt_go_info(&go, 3), 0xffff);
}

Test(nbd_wire, go_parse_rejects)
{
	struct nbdw_opt_go go;
	uint8_t b[sizeof(go_data) + 1];

	/* Every truncation. */
	for (size_t n = 0; n < sizeof(go_data); n++)
		cr_assert_eq(nbdw_opt_go_parse(go_data, n, &go), NBDW_INVALID, "len %zu", n);
	/* A trailing byte. */
	memcpy(b, go_data, sizeof(go_data));
	b[sizeof(go_data)] = 0;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(b), &go), NBDW_INVALID);
	/* Name length past the data, and one that leaves no room for the count. */
	memcpy(b, go_data, sizeof(go_data));
	b[3] = 0x0a;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(go_data), &go), NBDW_INVALID);
	b[0] = 0xff;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(go_data), &go), NBDW_INVALID);
	/* Count disagrees with the bytes present. */
	memcpy(b, go_data, sizeof(go_data));
	b[8] = 1;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(go_data), &go), NBDW_INVALID);
	b[8] = 3;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(go_data), &go), NBDW_INVALID);
	/* A known request listed twice. */
	memcpy(b, go_data, sizeof(go_data));
	b[10] = 0x00;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(go_data), &go), NBDW_INVALID);
	/* NUL inside the name. */
	memcpy(b, go_data, sizeof(go_data));
	b[5] = 0;
	cr_assert_eq(nbdw_opt_go_parse(b, sizeof(go_data), &go), NBDW_INVALID);
}

Test(nbd_wire, go_parse_name_limit)
{
	static uint8_t b[4 + NBDW_MAX_STRING + 1 + 2];
	struct nbdw_opt_go go;

	memset(b, 'n', sizeof(b));
	/* 4096-byte name: legal. */
	b[0] = 0, b[1] = 0, b[2] = 0x10, b[3] = 0x00;
	b[4 + 4096] = 0, b[4 + 4097] = 0;
	cr_assert_eq(nbdw_opt_go_parse(b, 4 + 4096 + 2, &go), 0);
	cr_assert_eq(go.name.len, 4096);
	/* 4097-byte name: over the spec's MUST. */
	b[3] = 0x01;
	b[4 + 4096] = 'n';
	b[4 + 4097] = 0, b[4 + 4098] = 0;
	cr_assert_eq(nbdw_opt_go_parse(b, 4 + 4097 + 2, &go), NBDW_INVALID);
}

Test(nbd_wire, nodata_check)
{
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_LIST, 0), 0);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_LIST, 1), NBDW_INVALID);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_STRUCTURED_REPLY, 0), 0);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_STRUCTURED_REPLY, 4), NBDW_INVALID);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_STARTTLS, 0), 0);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_STARTTLS, 2), NBDW_INVALID);
	/* ABORT: "a server SHOULD ignore any data sent by the client". */
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_ABORT, 0), 0);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_ABORT, 7), 0);
	/* Not no-data options. */
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_GO, 0), NBDW_INVALID);
	cr_assert_eq(nbdw_opt_nodata_check(NBD_OPT_EXPORT_NAME, 0), NBDW_INVALID);
	cr_assert_eq(nbdw_opt_nodata_check(12345, 0), NBDW_INVALID);
}

/* NBD_OPT_SET_META_CONTEXT data: export "foo", queries "base:allocation", "qemu:". */
/* clang-format off */
static const uint8_t meta_data[] = {
	0x00, 0x00, 0x00, 0x03, 'f', 'o', 'o', /* u32 export name length, name */
	0x00, 0x00, 0x00, 0x02,                /* two queries */
	0x00, 0x00, 0x00, 0x0f,                /* 15 */
	'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
	0x00, 0x00, 0x00, 0x05,                /* 5 */
	'q', 'e', 'm', 'u', ':',
};
/* clang-format on */

Test(nbd_wire, meta_parse)
{
	struct nbdw_opt_meta m;
	struct nbdw_meta_iter it;
	struct nbdw_str q;

	cr_assert_eq(nbdw_opt_meta_parse(meta_data, sizeof(meta_data), &m), 0);
	cr_assert_eq(m.name.len, 3);
	cr_assert(memcmp(m.name.ptr, "foo", 3) == 0);
	cr_assert_eq(m.n_queries, 2);

	nbdw_meta_iter_init(&it, &m);
	cr_assert(nbdw_meta_next(&it, &q));
	cr_assert_eq(q.len, 15);
	cr_assert_eq(q.ptr, (const char *)meta_data + 15);
	cr_assert(memcmp(q.ptr, NBDW_CONTEXT_BASE_ALLOCATION, 15) == 0);
	cr_assert(nbdw_meta_next(&it, &q));
	cr_assert_eq(q.len, 5);
	cr_assert(memcmp(q.ptr, "qemu:", 5) == 0);
	cr_assert_not(nbdw_meta_next(&it, &q));
	cr_assert_not(nbdw_meta_next(&it, &q));
}

Test(nbd_wire, meta_parse_no_queries_and_empty_query)
{
	/* Default export, zero queries (LIST: all contexts; SET: none). */
	static const uint8_t none[] = {0, 0, 0, 0, 0, 0, 0, 0};
	/* One empty query: structurally fine; the server ignores it. */
	static const uint8_t emptyq[] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
	struct nbdw_opt_meta m;
	struct nbdw_meta_iter it;
	struct nbdw_str q;

	cr_assert_eq(nbdw_opt_meta_parse(none, sizeof(none), &m), 0);
	cr_assert_eq(m.n_queries, 0);
	nbdw_meta_iter_init(&it, &m);
	cr_assert_not(nbdw_meta_next(&it, &q));

	cr_assert_eq(nbdw_opt_meta_parse(emptyq, sizeof(emptyq), &m), 0);
	nbdw_meta_iter_init(&it, &m);
	cr_assert(nbdw_meta_next(&it, &q));
	cr_assert_eq(q.len, 0);
	cr_assert_not(nbdw_meta_next(&it, &q));
}

Test(nbd_wire, meta_parse_rejects)
{
	struct nbdw_opt_meta m;
	uint8_t b[sizeof(meta_data) + 1];

	for (size_t n = 0; n < sizeof(meta_data); n++)
		cr_assert_eq(nbdw_opt_meta_parse(meta_data, n, &m), NBDW_INVALID, "len %zu", n);
	memcpy(b, meta_data, sizeof(meta_data));
	b[sizeof(meta_data)] = 'x';
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(b), &m), NBDW_INVALID);
	/* Query count too small (trailing query bytes) and too large. */
	memcpy(b, meta_data, sizeof(meta_data));
	b[10] = 1;
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
	b[10] = 3;
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
	b[7] = 0xff; /* huge count */
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
	/* A query length reaching past the data. */
	memcpy(b, meta_data, sizeof(meta_data));
	b[14] = 0x10;
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
	/* Export name length past the data. */
	memcpy(b, meta_data, sizeof(meta_data));
	b[3] = 0x40;
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
	/* NUL in a query, NUL in the name. */
	memcpy(b, meta_data, sizeof(meta_data));
	b[20] = 0;
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
	memcpy(b, meta_data, sizeof(meta_data));
	b[4] = 0;
	cr_assert_eq(nbdw_opt_meta_parse(b, sizeof(meta_data), &m), NBDW_INVALID);
}

Test(nbd_wire, meta_parse_query_limit)
{
	static uint8_t b[4 + 4 + 4 + NBDW_MAX_STRING + 1];
	struct nbdw_opt_meta m;

	memset(b, 'q', sizeof(b));
	memset(b, 0, 8);
	b[7] = 1;                                    /* one query */
	b[8] = 0, b[9] = 0, b[10] = 0x10, b[11] = 0; /* 4096 */
	cr_assert_eq(nbdw_opt_meta_parse(b, 12 + 4096, &m), 0);
	b[11] = 1; /* 4097 */
	cr_assert_eq(nbdw_opt_meta_parse(b, 12 + 4097, &m), NBDW_INVALID);
}

/* ---------------------------------------------------------------------- */
/* Option replies                                                         */
/* ---------------------------------------------------------------------- */

#define REP_MAGIC_BYTES 0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9 /* 0x3e889045565a9 */

Test(nbd_wire, rep_header_and_ack)
{
	/* clang-format off */
	static const uint8_t want[] = {
		REP_MAGIC_BYTES,        /* 0x3e889045565a9 */
		0x00, 0x00, 0x00, 0x08, /* NBD_OPT_STRUCTURED_REPLY */
		0x00, 0x00, 0x00, 0x01, /* NBD_REP_ACK */
		0x00, 0x00, 0x00, 0x00, /* no data */
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];

	cr_assert_eq(nbdw_rep_ack_encode(out, sizeof(out), NBD_OPT_STRUCTURED_REPLY), 20);
	expect_bytes(out, 20, want, sizeof(want));
	cr_assert_eq(nbdw_rep_ack_encode(out, 19, NBD_OPT_STRUCTURED_REPLY), 0);

	static const uint8_t hdr[] = {REP_MAGIC_BYTES,
	                              0xde,
	                              0xad,
	                              0xbe,
	                              0xef,
	                              0x80,
	                              0x00,
	                              0x00,
	                              0x09,
	                              0x01,
	                              0x02,
	                              0x03,
	                              0x04};
	nbdw_rep_header_encode(out, 0xdeadbeef, NBD_REP_ERR_TOO_BIG, 0x01020304);
	expect_bytes(out, 20, hdr, sizeof(hdr));
}

Test(nbd_wire, rep_server)
{
	/* clang-format off */
	static const uint8_t want[] = {
		REP_MAGIC_BYTES,                       /* 0x3e889045565a9 */
		0x00, 0x00, 0x00, 0x03,                /* NBD_OPT_LIST */
		0x00, 0x00, 0x00, 0x02,                /* NBD_REP_SERVER */
		0x00, 0x00, 0x00, 0x0b,                /* 4 + 3 + 4 */
		0x00, 0x00, 0x00, 0x03, 'v', 'm', '1', /* name */
		'd', 'i', 's', 'k',                    /* description */
	};
	/* clang-format on */
	static const uint8_t noname[] = {
	    REP_MAGIC_BYTES, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 0,
	};
	uint8_t out[BUF_LEN];

	size_t n = nbdw_rep_server_encode(out, sizeof(out), NBD_OPT_LIST, "vm1", 3, "disk", 4);
	expect_bytes(out, n, want, sizeof(want));
	cr_assert_eq(
	    nbdw_rep_server_encode(out, sizeof(want) - 1, NBD_OPT_LIST, "vm1", 3, "disk", 4), 0);
	n = nbdw_rep_server_encode(out, sizeof(out), NBD_OPT_LIST, NULL, 0, NULL, 0);
	expect_bytes(out, n, noname, sizeof(noname));
	cr_assert_eq(nbdw_rep_server_encode(out, sizeof(out), NBD_OPT_LIST, "a\0b", 3, NULL, 0), 0);
}

Test(nbd_wire, rep_info_export)
{
	/* clang-format off */
	static const uint8_t want[] = {
		REP_MAGIC_BYTES,                                /* 0x3e889045565a9 */
		0x00, 0x00, 0x00, 0x07,                         /* NBD_OPT_GO */
		0x00, 0x00, 0x00, 0x03,                         /* NBD_REP_INFO */
		0x00, 0x00, 0x00, 0x0c,                         /* length 12 */
		0x00, 0x00,                                     /* NBD_INFO_EXPORT */
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x02, 0x00, /* 4 GiB + 512 */
		0x0d, 0x6d,                                     /* flags, see below */
	};
	/* clang-format on */
	uint16_t tf = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
	              NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN |
	              NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO;
	uint8_t out[BUF_LEN];

	cr_assert_eq(tf, 0x0d6d); /* bits 0,2,3,5,6,8,10,11 */
	size_t n = nbdw_rep_info_export_encode(out, sizeof(out), NBD_OPT_GO, 0x100000200ull, tf);
	expect_bytes(out, n, want, sizeof(want));
	cr_assert_eq(nbdw_rep_info_export_encode(out, 31, NBD_OPT_GO, 1, tf), 0);
}

Test(nbd_wire, rep_info_name_description)
{
	/* clang-format off */
	static const uint8_t name[] = {
		REP_MAGIC_BYTES,                    /* 0x3e889045565a9 */
		0, 0, 0, 6, 0, 0, 0, 3, 0, 0, 0, 5, /* NBD_OPT_INFO, REP_INFO, 5 */
		0x00, 0x01, 'a', 'b', 'c',          /* NBD_INFO_NAME */
	};
	/* clang-format on */
	/* clang-format off */
	static const uint8_t desc[] = {
		REP_MAGIC_BYTES,                    /* 0x3e889045565a9 */
		0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 2, /* NBD_OPT_GO, REP_INFO, 2 */
		0x00, 0x02,                         /* NBD_INFO_DESCRIPTION, empty */
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];
	static char big[NBDW_MAX_STRING + 1];

	size_t n = nbdw_rep_info_name_encode(out, sizeof(out), NBD_OPT_INFO, "abc", 3);
	expect_bytes(out, n, name, sizeof(name));
	n = nbdw_rep_info_description_encode(out, sizeof(out), NBD_OPT_GO, NULL, 0);
	expect_bytes(out, n, desc, sizeof(desc));
	cr_assert_eq(nbdw_rep_info_name_encode(out, sizeof(name) - 1, NBD_OPT_INFO, "abc", 3), 0);
	memset(big, 'd', sizeof(big));
	cr_assert_eq(
	    nbdw_rep_info_description_encode(out, sizeof(out), NBD_OPT_GO, big, NBDW_MAX_STRING),
	    20 + 2 + NBDW_MAX_STRING);
	cr_assert_eq(nbdw_rep_info_description_encode(out, sizeof(out), NBD_OPT_GO, big,
	                                              NBDW_MAX_STRING + 1),
	             0);
}

Test(nbd_wire, rep_info_block_size)
{
	/* clang-format off */
	static const uint8_t want[] = {
		REP_MAGIC_BYTES,        /* 0x3e889045565a9 */
		0x00, 0x00, 0x00, 0x07, /* NBD_OPT_GO */
		0x00, 0x00, 0x00, 0x03, /* NBD_REP_INFO */
		0x00, 0x00, 0x00, 0x0e, /* 14 */
		0x00, 0x03,             /* NBD_INFO_BLOCK_SIZE */
		0x00, 0x00, 0x00, 0x01, /* minimum 1 */
		0x00, 0x00, 0x10, 0x00, /* preferred 4096 */
		0x02, 0x00, 0x00, 0x00, /* maximum 32 MiB */
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];

	size_t n = nbdw_rep_info_block_size_encode(out, sizeof(out), NBD_OPT_GO, 1, 4096,
	                                           NBDW_MAX_PAYLOAD);
	expect_bytes(out, n, want, sizeof(want));
	/* Values the spec forbids. */
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 3, 4096, 1 << 20), 0);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 0, 4096, 1 << 20), 0);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 131072, 131072, 1 << 20),
	             0);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 1, 256, 1 << 20), 0);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 4096, 2048, 1 << 20), 0);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 512, 4096, 1000000), 0);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 512, 4096, 2048), 0);
	/* No limit, a non-power-of-2 multiple, the largest minimum. */
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 512, 4096, 0xffffffffu),
	             34);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 512, 4096, 512 * 3000),
	             34);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, sizeof(out), 7, 65536, 65536, 1 << 20),
	             34);
	cr_assert_eq(nbdw_rep_info_block_size_encode(out, 33, 7, 1, 4096, 1 << 20), 0);
}

Test(nbd_wire, rep_meta_context)
{
	/* clang-format off */
	static const uint8_t want[] = {
		REP_MAGIC_BYTES,        /* 0x3e889045565a9 */
		0x00, 0x00, 0x00, 0x0a, /* NBD_OPT_SET_META_CONTEXT */
		0x00, 0x00, 0x00, 0x04, /* NBD_REP_META_CONTEXT */
		0x00, 0x00, 0x00, 0x13, /* 4 + 15 */
		0x00, 0x00, 0x00, 0x01, /* context id 1 */
		'b', 'a', 's', 'e', ':', 'a', 'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n',
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];

	size_t n = nbdw_rep_meta_context_encode(out, sizeof(out), NBD_OPT_SET_META_CONTEXT, 1,
	                                        NBDW_CONTEXT_BASE_ALLOCATION, 15);
	expect_bytes(out, n, want, sizeof(want));
	cr_assert_eq(nbdw_rep_meta_context_encode(out, sizeof(out), 10, 1, "", 0), 0);
	cr_assert_eq(nbdw_rep_meta_context_encode(out, sizeof(want) - 1, 10, 1,
	                                          NBDW_CONTEXT_BASE_ALLOCATION, 15),
	             0);
}

Test(nbd_wire, rep_errors)
{
	/* clang-format off */
	static const uint8_t want[] = {
		REP_MAGIC_BYTES,        /* 0x3e889045565a9 */
		0x12, 0x34, 0x56, 0x78, /* an unknown option, echoed */
		0x80, 0x00, 0x00, 0x01, /* NBD_REP_ERR_UNSUP = 2^31 + 1 */
		0x00, 0x00, 0x00, 0x02, /* message length */
		'n', 'o',
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];

	size_t n = nbdw_rep_err_encode(out, sizeof(out), 0x12345678, NBD_REP_ERR_UNSUP, "no", 2);
	expect_bytes(out, n, want, sizeof(want));

	/* Every error value is 2^31 + k, as listed in the spec. */
	const uint32_t errs[] = {
	    NBD_REP_ERR_UNSUP,    NBD_REP_ERR_POLICY,          NBD_REP_ERR_INVALID,
	    NBD_REP_ERR_PLATFORM, NBD_REP_ERR_TLS_REQD,        NBD_REP_ERR_UNKNOWN,
	    NBD_REP_ERR_SHUTDOWN, NBD_REP_ERR_BLOCK_SIZE_REQD, NBD_REP_ERR_TOO_BIG};
	for (uint32_t k = 0; k < 9; k++) {
		cr_assert_eq(errs[k], 0x80000000u + k + 1);
		cr_assert_eq(nbdw_rep_err_encode(out, sizeof(out), 1, errs[k], NULL, 0), 20);
		cr_assert_eq(out[12], 0x80);
		cr_assert_eq(out[15], k + 1);
		cr_assert_eq(out[19], 0);
	}
	/* Not an error type; message too long; cap too small. */
	cr_assert_eq(nbdw_rep_err_encode(out, sizeof(out), 1, NBD_REP_ACK, NULL, 0), 0);
	static char big[NBDW_MAX_STRING + 1];
	memset(big, 'm', sizeof(big));
	cr_assert_eq(
	    nbdw_rep_err_encode(out, sizeof(out), 1, NBD_REP_ERR_INVALID, big, NBDW_MAX_STRING + 1),
	    0);
	cr_assert_eq(nbdw_rep_err_encode(out, 21, 1, NBD_REP_ERR_INVALID, "ab", 2), 0);
}

Test(nbd_wire, export_name_reply)
{
	/* clang-format off */
	static const uint8_t want[] = {
		0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, /* 1 GiB */
		0x00, 0x03,                                     /* HAS_FLAGS | READ_ONLY */
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];

	memset(out, 0xee, sizeof(out));
	size_t n = nbdw_export_name_reply_encode(out, sizeof(out), 1ull << 30,
	                                         NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, true);
	expect_bytes(out, n, want, sizeof(want));
	cr_assert_eq(out[10], 0xee); /* nothing written past it */

	n = nbdw_export_name_reply_encode(out, sizeof(out), 1ull << 30,
	                                  NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY, false);
	cr_assert_eq(n, 10 + 124);
	expect_bytes(out, 10, want, sizeof(want));
	for (size_t i = 10; i < 134; i++)
		cr_assert_eq(out[i], 0, "byte %zu", i);
	cr_assert_eq(nbdw_export_name_reply_encode(out, 133, 1, 1, false), 0);
	cr_assert_eq(nbdw_export_name_reply_encode(out, 9, 1, 1, true), 0);
}

/* ---------------------------------------------------------------------- */
/* Requests                                                               */
/* ---------------------------------------------------------------------- */

/* clang-format off */
static const uint8_t req_write[] = {
	0x25, 0x60, 0x95, 0x13,                         /* NBD_REQUEST_MAGIC */
	0x00, 0x01,                                     /* NBD_CMD_FLAG_FUA */
	0x00, 0x01,                                     /* NBD_CMD_WRITE */
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* cookie */
	0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x02, 0x00, /* offset 0x100200 */
	0x00, 0x00, 0x10, 0x00,                         /* length 4096 */
};
/* clang-format on */

Test(nbd_wire, request_decode)
{
	struct nbdw_request r;

	cr_assert_eq(nbdw_request_decode(req_write, sizeof(req_write), &r), 0);
	cr_assert_eq(r.flags, NBD_CMD_FLAG_FUA);
	cr_assert_eq(r.type, NBD_CMD_WRITE);
	cr_assert_eq(r.cookie, 0x0102030405060708ull);
	cr_assert_eq(r.offset, 0x100200);
	cr_assert_eq(r.length, 4096);
	cr_assert_eq(nbdw_request_payload_len(&r), 4096);

	uint8_t out[NBDW_REQUEST_LEN];
	nbdw_request_encode(out, &r);
	expect_bytes(out, sizeof(out), req_write, sizeof(req_write));
}

Test(nbd_wire, request_rejects)
{
	struct nbdw_request r;
	uint8_t b[sizeof(req_write) + 1];

	for (size_t n = 0; n < sizeof(req_write); n++)
		cr_assert_eq(nbdw_request_decode(req_write, n, &r), NBDW_INVALID, "len %zu", n);
	memcpy(b, req_write, sizeof(req_write));
	b[sizeof(req_write)] = 0;
	cr_assert_eq(nbdw_request_decode(b, sizeof(b), &r), NBDW_INVALID);
	for (size_t i = 0; i < 4; i++) {
		memcpy(b, req_write, sizeof(req_write));
		b[i] ^= 0x01;
		cr_assert_eq(nbdw_request_decode(b, sizeof(req_write), &r), NBDW_INVALID);
	}
	/* The historic request magic 0x12560953 is reserved, not accepted. */
	memcpy(b, req_write, sizeof(req_write));
	b[0] = 0x12, b[1] = 0x56, b[2] = 0x09, b[3] = 0x53;
	cr_assert_eq(nbdw_request_decode(b, sizeof(req_write), &r), NBDW_INVALID);
}

Test(nbd_wire, payload_only_for_write)
{
	for (uint16_t t = 0; t < 16; t++) {
		struct nbdw_request r = {.type = t, .length = 512};
		cr_assert_eq(nbdw_request_payload_len(&r), t == NBD_CMD_WRITE ? 512u : 0u);
	}
}

/* ---------------------------------------------------------------------- */
/* Transmission replies                                                   */
/* ---------------------------------------------------------------------- */

#define COOKIE_BYTES 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8
#define COOKIE       0xa1a2a3a4a5a6a7a8ull

Test(nbd_wire, simple_reply)
{
	static const uint8_t want[] = {0x67, 0x44, 0x66, 0x98,        0x00,
	                               0x00, 0x00, 0x1c, COOKIE_BYTES};
	uint8_t out[NBDW_SIMPLE_REPLY_LEN];

	nbdw_simple_reply_encode(out, NBD_ENOSPC, COOKIE);
	expect_bytes(out, sizeof(out), want, sizeof(want));
}

Test(nbd_wire, chunk_header_and_none)
{
	/* clang-format off */
	static const uint8_t none[] = {
		0x66, 0x8e, 0x33, 0xef, /* NBD_STRUCTURED_REPLY_MAGIC */
		0x00, 0x01,             /* NBD_REPLY_FLAG_DONE */
		0x00, 0x00,             /* NBD_REPLY_TYPE_NONE */
		COOKIE_BYTES,           /* cookie */
		0x00, 0x00, 0x00, 0x00, /* no payload */
	};
	/* clang-format on */
	static const uint8_t hdr[] = {0x66, 0x8e,         0x33, 0xef, 0x00, 0x00, 0x80,
	                              0x01, COOKIE_BYTES, 0x00, 0x01, 0x00, 0x00};
	uint8_t out[NBDW_CHUNK_HEADER_LEN];

	nbdw_chunk_none_encode(out, COOKIE);
	expect_bytes(out, sizeof(out), none, sizeof(none));
	nbdw_chunk_header_encode(out, 0, NBD_REPLY_TYPE_ERROR, COOKIE, 65536);
	expect_bytes(out, sizeof(out), hdr, sizeof(hdr));
}

Test(nbd_wire, chunk_offset_data)
{
	/* clang-format off */
	static const uint8_t want[] = {
		0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x01, /* DONE, OFFSET_DATA */
		COOKIE_BYTES,                                   /* cookie */
		0x00, 0x00, 0x02, 0x08,                         /* 8 + 512 */
		0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, /* offset 8 GiB */
	};
	/* clang-format on */
	uint8_t out[NBDW_OFFSET_DATA_HDR_LEN];

	cr_assert_eq(nbdw_chunk_offset_data_hdr_encode(out, NBD_REPLY_FLAG_DONE, COOKIE,
	                                               0x200000000ull, 512),
	             28);
	expect_bytes(out, sizeof(out), want, sizeof(want));
	cr_assert_eq(nbdw_chunk_offset_data_hdr_encode(out, 0, COOKIE, 0, 0), 0);
	cr_assert_eq(nbdw_chunk_offset_data_hdr_encode(out, 0, COOKIE, 0, 0xffffffffu - 8), 28);
	cr_assert_eq(out[16], 0xff);
	cr_assert_eq(out[19], 0xff);
	cr_assert_eq(nbdw_chunk_offset_data_hdr_encode(out, 0, COOKIE, 0, 0xffffffffu - 7), 0);
}

Test(nbd_wire, chunk_offset_hole)
{
	/* clang-format off */
	static const uint8_t want[] = {
		0x66, 0x8e, 0x33, 0xef, 0x00, 0x00, 0x00, 0x02, /* not DONE, OFFSET_HOLE */
		COOKIE_BYTES,                                   /* cookie */
		0x00, 0x00, 0x00, 0x0c,                         /* 12 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, /* offset 64 KiB */
		0x00, 0x10, 0x00, 0x00,                         /* 1 MiB of zeroes */
	};
	/* clang-format on */
	uint8_t out[NBDW_OFFSET_HOLE_LEN];

	cr_assert_eq(nbdw_chunk_offset_hole_encode(out, 0, COOKIE, 65536, 1 << 20), 32);
	expect_bytes(out, sizeof(out), want, sizeof(want));
	cr_assert_eq(nbdw_chunk_offset_hole_encode(out, 0, COOKIE, 65536, 0), 0);
}

Test(nbd_wire, chunk_block_status)
{
	/* clang-format off */
	static const uint8_t want[] = {
		0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x00, 0x05, /* DONE, BLOCK_STATUS */
		COOKIE_BYTES,                                   /* cookie */
		0x00, 0x00, 0x00, 0x14,                         /* 4 + 2 * 8 */
		0x00, 0x00, 0x00, 0x01,                         /* context id */
	};
	/* clang-format on */
	static const uint8_t d1[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03};
	static const uint8_t d2[] = {0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00};
	uint8_t out[NBDW_BLOCK_STATUS_HDR_LEN];
	uint8_t d[NBDW_BLOCK_DESC_LEN];

	cr_assert_eq(nbdw_chunk_block_status_hdr_encode(out, NBD_REPLY_FLAG_DONE, COOKIE, 1, 2),
	             24);
	expect_bytes(out, sizeof(out), want, sizeof(want));
	cr_assert_eq(nbdw_block_desc_encode(d, 65536, NBD_STATE_HOLE | NBD_STATE_ZERO), 8);
	expect_bytes(d, sizeof(d), d1, sizeof(d1));
	cr_assert_eq(nbdw_block_desc_encode(d, 512, 0), 8);
	expect_bytes(d, sizeof(d), d2, sizeof(d2));

	cr_assert_eq(nbdw_block_desc_encode(d, 0, 0), 0);
	cr_assert_eq(nbdw_chunk_block_status_hdr_encode(out, 0, COOKIE, 1, 0), 0);
	cr_assert_eq(nbdw_chunk_block_status_hdr_encode(out, 0, COOKIE, 1, 536870911), 24);
	cr_assert_eq(nbdw_chunk_block_status_hdr_encode(out, 0, COOKIE, 1, 536870912), 0);
}

Test(nbd_wire, chunk_error)
{
	/* clang-format off */
	static const uint8_t want[] = {
		0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01, /* DONE, ERROR (2^15 + 1) */
		COOKIE_BYTES,                                   /* cookie */
		0x00, 0x00, 0x00, 0x09,                         /* 4 + 2 + 3 */
		0x00, 0x00, 0x00, 0x05,                         /* NBD_EIO */
		0x00, 0x03, 'b', 'a', 'd',
	};
	/* clang-format on */
	static const uint8_t bare[] = {
	    0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01, COOKIE_BYTES, 0x00,
	    0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00,
	};
	uint8_t out[BUF_LEN];

	size_t n = nbdw_chunk_error_encode(out, sizeof(out), NBD_REPLY_FLAG_DONE, COOKIE, NBD_EIO,
	                                   "bad", 3);
	expect_bytes(out, n, want, sizeof(want));
	n = nbdw_chunk_error_encode(out, sizeof(out), NBD_REPLY_FLAG_DONE, COOKIE, NBD_EINVAL, NULL,
	                            0);
	expect_bytes(out, n, bare, sizeof(bare));
	cr_assert_eq(nbdw_chunk_error_encode(out, sizeof(out), 1, COOKIE, 0, NULL, 0), 0);
	cr_assert_eq(nbdw_chunk_error_encode(out, sizeof(want) - 1, 1, COOKIE, NBD_EIO, "bad", 3),
	             0);
	static char big[NBDW_MAX_STRING + 1];
	memset(big, 'm', sizeof(big));
	cr_assert_eq(
	    nbdw_chunk_error_encode(out, sizeof(out), 1, COOKIE, NBD_EIO, big, NBDW_MAX_STRING + 1),
	    0);
}

Test(nbd_wire, chunk_error_offset)
{
	/* clang-format off */
	static const uint8_t want[] = {
		0x66, 0x8e, 0x33, 0xef, 0x00, 0x00, 0x80, 0x02, /* ERROR_OFFSET (2^15 + 2) */
		COOKIE_BYTES,                                   /* cookie */
		0x00, 0x00, 0x00, 0x10,                         /* 4 + 2 + 2 + 8 */
		0x00, 0x00, 0x00, 0x05,                         /* NBD_EIO */
		0x00, 0x02, 'i', 'o',                           /* message */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, /* offset 4096 */
	};
	/* clang-format on */
	uint8_t out[BUF_LEN];

	size_t n =
	    nbdw_chunk_error_offset_encode(out, sizeof(out), 0, COOKIE, NBD_EIO, "io", 2, 4096);
	expect_bytes(out, n, want, sizeof(want));
	cr_assert_eq(nbdw_chunk_error_offset_encode(out, sizeof(want) - 1, 0, COOKIE, NBD_EIO, "io",
	                                            2, 4096),
	             0);
	cr_assert_eq(nbdw_chunk_error_offset_encode(out, sizeof(out), 0, COOKIE, 0, "io", 2, 4096),
	             0);
}

/* ---------------------------------------------------------------------- */
/* Validation                                                             */
/* ---------------------------------------------------------------------- */

#define MiB (1024u * 1024u)

/* A writable 64 MiB export with every optional feature negotiated. */
static struct nbdw_limits full(void)
{
	struct nbdw_limits l = {
	    .export_size = 64 * MiB,
	    .min_block = 1,
	    .max_payload = NBDW_MAX_PAYLOAD,
	    .tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
	              NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF |
	              NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO,
	    .structured = true,
	    .meta_base_allocation = 1,
	};
	return l;
}

/* Only what the spec's baseline requires: no optional flag, simple replies. */
static struct nbdw_limits bare(void)
{
	struct nbdw_limits l = {
	    .export_size = 64 * MiB,
	    .min_block = 1,
	    .max_payload = NBDW_MAX_PAYLOAD,
	    .tflags = NBD_FLAG_HAS_FLAGS,
	};
	return l;
}

static int check(uint16_t type, uint16_t flags, uint64_t off, uint32_t len,
                 const struct nbdw_limits *l)
{
	struct nbdw_request r = {
	    .flags = flags, .type = type, .cookie = 7, .offset = off, .length = len};
	return nbdw_request_check(&r, l);
}

Test(nbd_wire, check_valid_requests)
{
	struct nbdw_limits l = full();

	cr_assert_eq(check(NBD_CMD_READ, 0, 0, 4096, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 4096, 4096, &l), 0);
	cr_assert_eq(check(NBD_CMD_DISC, 0, 0, 0, &l), 0);
	cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 0, &l), 0);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, 64 * MiB, &l), 0);
	cr_assert_eq(check(NBD_CMD_CACHE, 0, 0, 64 * MiB, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 0, 64 * MiB, &l), 0); /* no payload: no max */
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 0, 64 * MiB, &l), 0);
	/* The last byte of the export. */
	cr_assert_eq(check(NBD_CMD_READ, 0, 64 * MiB - 1, 1, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 64 * MiB - 1, 1, &l), 0);
}

Test(nbd_wire, check_unknown_or_unadvertised_command)
{
	struct nbdw_limits l = full();
	struct nbdw_limits b = bare();

	/* "SHOULD return NBD_EINVAL if it receives an unknown command". */
	cr_assert_eq(check(NBD_CMD_RESIZE, 0, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(9, 0, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(0xffff, 0, 0, 512, &l), NBD_EINVAL);
	/* Commands whose NBD_FLAG_SEND_* was not set. */
	cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 0, &b), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, 512, &b), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_CACHE, 0, 0, 512, &b), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &b), NBD_EINVAL);
	/* The baseline commands work without any flag. */
	cr_assert_eq(check(NBD_CMD_READ, 0, 0, 512, &b), 0);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, 512, &b), 0);
	cr_assert_eq(check(NBD_CMD_DISC, 0, 0, 0, &b), 0);
}

Test(nbd_wire, check_block_status_needs_context)
{
	struct nbdw_limits l = full();

	/* "Servers SHOULD reply with NBD_EINVAL to clients sending NBD_CMD_BLOCK_STATUS
	 * without selecting at least one metadata context." */
	l.meta_base_allocation = 0;
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l), NBD_EINVAL);
	l = full();
	l.structured = false;
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l), NBD_EINVAL);
}

Test(nbd_wire, check_unknown_flags)
{
	struct nbdw_limits l = full();
	const uint16_t cmds[] = {NBD_CMD_READ,        NBD_CMD_WRITE, NBD_CMD_FLUSH,
	                         NBD_CMD_TRIM,        NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES,
	                         NBD_CMD_BLOCK_STATUS};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		uint32_t len = cmds[i] == NBD_CMD_FLUSH ? 0 : 512;
		for (int bit = 5; bit < 16; bit++)
			cr_assert_eq(check(cmds[i], (uint16_t)(1u << bit), 0, len, &l), NBD_EINVAL,
			             "cmd %u bit %d", cmds[i], bit);
	}
}

Test(nbd_wire, check_flags_per_command)
{
	struct nbdw_limits l = full();

	/* DF: READ only. */
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
	/* NO_HOLE: WRITE_ZEROES only. */
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_TRIM, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l), NBD_EINVAL);
	/* FAST_ZERO: WRITE_ZEROES only. */
	cr_assert_eq(
	    check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO | NBD_CMD_FLAG_NO_HOLE, 0, 512, &l),
	    0);
	cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_TRIM, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &l), NBD_EINVAL);
	/* REQ_ONE: BLOCK_STATUS only. */
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, NBD_CMD_FLAG_REQ_ONE, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_REQ_ONE, 0, 512, &l), NBD_EINVAL);
	/* CACHE accepts no flag but FUA. */
	cr_assert_eq(check(NBD_CMD_CACHE, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
}

Test(nbd_wire, check_fua)
{
	struct nbdw_limits l = full();
	struct nbdw_limits b = bare();

	/* "valid for all commands, provided NBD_FLAG_SEND_FUA has been negotiated, in which
	 * case the server MUST accept all commands with this bit set". */
	cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FUA, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_TRIM, NBD_CMD_FLAG_FUA, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_FLUSH, NBD_CMD_FLAG_FUA, 0, 0, &l), 0);
	/* Not negotiated: a flag the client must not use. */
	cr_assert_eq(check(NBD_CMD_WRITE, NBD_CMD_FLAG_FUA, 0, 512, &b), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_FUA, 0, 512, &b), NBD_EINVAL);
}

Test(nbd_wire, check_flags_need_negotiation)
{
	struct nbdw_limits l = full();

	/* DF needs NBD_FLAG_SEND_DF, which needs structured replies. */
	l.tflags &= (uint16_t)~NBD_FLAG_SEND_DF;
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
	l = full();
	l.structured = false;
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, 512, &l), NBD_EINVAL);
	/* FAST_ZERO without NBD_FLAG_SEND_FAST_ZERO: "SHOULD fail with NBD_EINVAL". */
	l = full();
	l.tflags &= (uint16_t)~NBD_FLAG_SEND_FAST_ZERO;
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, 0, 512, &l), 0);
}

Test(nbd_wire, check_read_only)
{
	struct nbdw_limits l = full();

	l.tflags |= NBD_FLAG_READ_ONLY;
	/* "SHOULD return NBD_EPERM if it receives a write or trim request on a read-only
	 * export"; WRITE_ZEROES: "SHOULD return NBD_EPERM ... on a read-only export". */
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, 512, &l), NBD_EPERM);
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 0, 512, &l), NBD_EPERM);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, 512, &l), NBD_EPERM);
	/* EPERM wins over a range error. */
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 64 * MiB, 512, &l), NBD_EPERM);
	/* Reads are fine. */
	cr_assert_eq(check(NBD_CMD_READ, 0, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_CACHE, 0, 0, 512, &l), 0);
	cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 0, &l), 0);
}

Test(nbd_wire, check_beyond_end)
{
	struct nbdw_limits l = full();

	/* Error values: ENOSPC for a write beyond the end, EINVAL for a read or trim. */
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 64 * MiB - 511, 512, &l), NBD_ENOSPC);
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 64 * MiB, 512, &l), NBD_ENOSPC);
	cr_assert_eq(check(NBD_CMD_READ, 0, 64 * MiB - 511, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, 64 * MiB, 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 64 * MiB, 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_CACHE, 0, 64 * MiB, 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_READ, 0, 1ull << 40, 1, &l), NBD_EINVAL);
}

Test(nbd_wire, check_wraparound)
{
	struct nbdw_limits l = full();

	l.export_size = UINT64_MAX;
	cr_assert_eq(check(NBD_CMD_READ, 0, UINT64_MAX, 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, UINT64_MAX - 10, 4096, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, UINT64_MAX - 10, 4096, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_READ, 0, UINT64_MAX - 4096, 4096, &l), 0);
}

Test(nbd_wire, check_zero_length)
{
	struct nbdw_limits l = full();
	const uint16_t cmds[] = {NBD_CMD_READ,  NBD_CMD_WRITE,        NBD_CMD_TRIM,
	                         NBD_CMD_CACHE, NBD_CMD_WRITE_ZEROES, NBD_CMD_BLOCK_STATUS};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		cr_assert_eq(check(cmds[i], 0, 0, 0, &l), NBD_EINVAL, "cmd %u", cmds[i]);
}

Test(nbd_wire, check_disc_flush_fields)
{
	struct nbdw_limits l = full();

	/* FLUSH: "length and offset are reserved, and MUST be set to all-zero"; DISC alike. */
	cr_assert_eq(check(NBD_CMD_FLUSH, 0, 512, 0, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_FLUSH, 0, 0, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_DISC, 0, 0, 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_DISC, 0, 1, 0, &l), NBD_EINVAL);
}

Test(nbd_wire, check_max_payload)
{
	struct nbdw_limits l = full();

	l.export_size = 1ull << 32;
	cr_assert_eq(check(NBD_CMD_READ, 0, 0, NBDW_MAX_PAYLOAD, &l), 0);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, NBDW_MAX_PAYLOAD, &l), 0);
	/* Above the advertised maximum block size: "SHOULD report an NBD_EINVAL error"
	 * (and NBD_EOVERFLOW is reserved for READ with DF). */
	cr_assert_eq(check(NBD_CMD_READ, 0, 0, NBDW_MAX_PAYLOAD + 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_READ, NBD_CMD_FLAG_DF, 0, NBDW_MAX_PAYLOAD + 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, NBDW_MAX_PAYLOAD + 1, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 0, 0xffffffffu, &l), NBD_EINVAL);
	/* Commands without a payload are not bounded by it. */
	cr_assert_eq(check(NBD_CMD_WRITE_ZEROES, 0, 0, 0xffffffffu, &l), 0);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, 0, 0xffffffffu, &l), 0);
	cr_assert_eq(check(NBD_CMD_BLOCK_STATUS, 0, 0, 0xffffffffu, &l), 0);
	cr_assert_eq(check(NBD_CMD_CACHE, 0, 0, 0xffffffffu, &l), 0);
}

Test(nbd_wire, check_alignment)
{
	struct nbdw_limits l = full();

	/* "SHOULD report an NBD_EINVAL error if the client's request is not aligned to
	 * advertised minimum block size boundaries". */
	l.min_block = 512;
	cr_assert_eq(check(NBD_CMD_READ, 0, 512, 1024, &l), 0);
	cr_assert_eq(check(NBD_CMD_READ, 0, 1, 512, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_WRITE, 0, 512, 100, &l), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_TRIM, 0, 256, 512, &l), NBD_EINVAL);
	l.min_block = 0; /* treated as 1 */
	cr_assert_eq(check(NBD_CMD_READ, 0, 1, 3, &l), 0);
}

/* ---------------------------------------------------------------------- */
/* Names                                                                  */
/* ---------------------------------------------------------------------- */

Test(nbd_wire, names)
{
	cr_assert_str_eq(nbdw_opt_name(NBD_OPT_GO), "NBD_OPT_GO");
	cr_assert_str_eq(nbdw_opt_name(NBD_OPT_SET_META_CONTEXT), "NBD_OPT_SET_META_CONTEXT");
	cr_assert_str_eq(nbdw_opt_name(0), "unknown");
	cr_assert_str_eq(nbdw_opt_name(0xffffffffu), "unknown");
	cr_assert_str_eq(nbdw_rep_name(NBD_REP_ACK), "NBD_REP_ACK");
	cr_assert_str_eq(nbdw_rep_name(NBD_REP_ERR_TOO_BIG), "NBD_REP_ERR_TOO_BIG");
	cr_assert_str_eq(nbdw_rep_name(NBD_REP_FLAG_ERROR), "unknown");
	cr_assert_str_eq(nbdw_rep_name(0x80000064u), "unknown");
	cr_assert_str_eq(nbdw_info_name(NBD_INFO_BLOCK_SIZE), "NBD_INFO_BLOCK_SIZE");
	cr_assert_str_eq(nbdw_info_name(4), "unknown");
	cr_assert_str_eq(nbdw_cmd_name(NBD_CMD_BLOCK_STATUS), "NBD_CMD_BLOCK_STATUS");
	cr_assert_str_eq(nbdw_cmd_name(0xffff), "unknown");
	cr_assert_str_eq(nbdw_reply_type_name(NBD_REPLY_TYPE_ERROR_OFFSET),
	                 "NBD_REPLY_TYPE_ERROR_OFFSET");
	cr_assert_str_eq(nbdw_reply_type_name(3), "unknown");
	cr_assert_str_eq(nbdw_err_name(NBD_ESHUTDOWN), "NBD_ESHUTDOWN");
	cr_assert_str_eq(nbdw_err_name(0), "OK");
	cr_assert_str_eq(nbdw_err_name(2), "unknown");
}
