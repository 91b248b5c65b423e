/* SPDX-License-Identifier: ISC */
/*
 * The portable BLAKE2b against libsodium's (the reference here) and against
 * known answers, so that switching implementations never changes a digest.
 */
#include <criterion/criterion.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "blake2b.h"
#include "vcrypto.h"

static void setup(void)
{
	cr_assert_eq(sodium_init() >= 0, 1);
}

TestSuite(blake2b, .init = setup);

Test(blake2b, known_answers)
{
	/* RFC 7693 appendix A: BLAKE2b-512("abc"). */
	static const uint8_t want512[64] = {
	    0xba, 0x80, 0xa5, 0x3f, 0x98, 0x1c, 0x4d, 0x0d, 0x6a, 0x27, 0x97, 0xb6, 0x9f,
	    0x12, 0xf6, 0xe9, 0x4c, 0x21, 0x2f, 0x14, 0x68, 0x5a, 0xc4, 0xb7, 0x4b, 0x12,
	    0xbb, 0x6f, 0xdb, 0xff, 0xa2, 0xd1, 0x7d, 0x87, 0xc5, 0x39, 0x2a, 0xab, 0x79,
	    0x2d, 0xc2, 0x52, 0xd5, 0xde, 0x45, 0x33, 0xcc, 0x95, 0x18, 0xd3, 0x8a, 0xa8,
	    0xdb, 0xf1, 0x92, 0x5a, 0xb9, 0x23, 0x86, 0xed, 0xd4, 0x00, 0x99, 0x23};
	/* BLAKE2b-256("abc"), as b2sum -l 256 prints it. */
	static const uint8_t want256[32] = {0xbd, 0xdd, 0x81, 0x3c, 0x63, 0x42, 0x39, 0x72,
	                                    0x31, 0x71, 0xef, 0x3f, 0xee, 0x98, 0x57, 0x9b,
	                                    0x94, 0x96, 0x4e, 0x3b, 0xb1, 0xcb, 0x3e, 0x42,
	                                    0x72, 0x62, 0xc8, 0xc0, 0x68, 0xd5, 0x23, 0x19};
	uint8_t out[64];

	blake2b_hash(out, 64, "abc", 3);
	cr_assert_arr_eq(out, want512, 64);
	blake2b_hash(out, 32, "abc", 3);
	cr_assert_arr_eq(out, want256, 32);
}

Test(blake2b, equals_libsodium_for_every_length)
{
	enum { MAX = 1100 };
	uint8_t *buf = malloc(MAX), a[32], b[32];

	for (size_t i = 0; i < MAX; i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	/* Every length through several blocks: exercises 0, 127, 128, 129, 256 ... */
	for (size_t len = 0; len < MAX; len++) {
		crypto_generichash(a, 32, buf, len, NULL, 0);
		blake2b_hash(b, 32, buf, len);
		cr_assert_arr_eq(a, b, 32, "length %zu", len);
	}
	free(buf);
}

Test(blake2b, equals_libsodium_on_a_chunk)
{
	size_t len = 256 * 1024 + 77;
	uint8_t *buf = malloc(len), a[32], b[32];

	randombytes_buf(buf, len);
	crypto_generichash(a, 32, buf, len, NULL, 0);
	blake2b_hash(b, 32, buf, len);
	cr_assert_arr_eq(a, b, 32);
	free(buf);
}

Test(blake2b, vcrypto_hash_agrees_whichever_is_chosen)
{
	uint8_t a[32], b[32];

	cr_assert_eq(vcrypto_init(), 0);
	vcrypto_hash(a, "abc", 3);
	blake2b_hash(b, 32, "abc", 3);
	cr_assert_arr_eq(a, b, 32, "vcrypto_hash (portable=%d) differs", vcrypto_hash_portable());
}
