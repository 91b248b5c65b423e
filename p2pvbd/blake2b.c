/* SPDX-License-Identifier: ISC */
/*
 * blake2b: RFC 7693, written for speed on 64-bit CPUs: the message block is
 * loaded once per compression and the twelve rounds are unrolled by the
 * compiler from the G macro. See blake2b.h for why this exists.
 */
#include "blake2b.h"

#include <string.h>

static const uint64_t blake2b_iv[8] = {
    0x6a09e667f3bcc908ull, 0xbb67ae8584caa73bull, 0x3c6ef372fe94f82bull, 0xa54ff53a5f1d36f1ull,
    0x510e527fade682d1ull, 0x9b05688c2b3e6c1full, 0x1f83d9abfb41bd6bull, 0x5be0cd19137e2179ull,
};

/* Message word schedule, RFC 7693 section 2.7 (rounds 10 and 11 repeat 0 and 1). */
static const uint8_t blake2b_sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

static inline uint64_t rotr64(uint64_t x, unsigned n)
{
	return (x >> n) | (x << (64 - n));
}

static inline uint64_t load64_le(const uint8_t *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
	       (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	       (uint64_t)p[7] << 56;
}

#define G(r, i, a, b, c, d)                                                                        \
	do {                                                                                       \
		a = a + b + m[blake2b_sigma[r][2 * (i)]];                                          \
		d = rotr64(d ^ a, 32);                                                             \
		c = c + d;                                                                         \
		b = rotr64(b ^ c, 24);                                                             \
		a = a + b + m[blake2b_sigma[r][2 * (i) + 1]];                                      \
		d = rotr64(d ^ a, 16);                                                             \
		c = c + d;                                                                         \
		b = rotr64(b ^ c, 63);                                                             \
	} while (0)

#define ROUND(r)                                                                                   \
	do {                                                                                       \
		G(r, 0, v0, v4, v8, v12);                                                          \
		G(r, 1, v1, v5, v9, v13);                                                          \
		G(r, 2, v2, v6, v10, v14);                                                         \
		G(r, 3, v3, v7, v11, v15);                                                         \
		G(r, 4, v0, v5, v10, v15);                                                         \
		G(r, 5, v1, v6, v11, v12);                                                         \
		G(r, 6, v2, v7, v8, v13);                                                          \
		G(r, 7, v3, v4, v9, v14);                                                          \
	} while (0)

/* Compress one 128-byte block; t is the byte count so far (including it). */
static void blake2b_compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last)
{
	uint64_t m[16];
	uint64_t v0 = h[0], v1 = h[1], v2 = h[2], v3 = h[3], v4 = h[4], v5 = h[5], v6 = h[6],
	         v7 = h[7];
	uint64_t v8 = blake2b_iv[0], v9 = blake2b_iv[1], v10 = blake2b_iv[2], v11 = blake2b_iv[3];
	/* The counter's high word stays 0: inputs here are far below 2^64 bytes. */
	uint64_t v12 = blake2b_iv[4] ^ t, v13 = blake2b_iv[5];
	uint64_t v14 = last ? ~blake2b_iv[6] : blake2b_iv[6], v15 = blake2b_iv[7];

	for (int i = 0; i < 16; i++)
		m[i] = load64_le(block + 8 * i);
	ROUND(0);
	ROUND(1);
	ROUND(2);
	ROUND(3);
	ROUND(4);
	ROUND(5);
	ROUND(6);
	ROUND(7);
	ROUND(8);
	ROUND(9);
	ROUND(10);
	ROUND(11);
	h[0] ^= v0 ^ v8;
	h[1] ^= v1 ^ v9;
	h[2] ^= v2 ^ v10;
	h[3] ^= v3 ^ v11;
	h[4] ^= v4 ^ v12;
	h[5] ^= v5 ^ v13;
	h[6] ^= v6 ^ v14;
	h[7] ^= v7 ^ v15;
}

void blake2b_hash(uint8_t *out, size_t outlen, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h[8];
	uint8_t last[128];
	uint8_t digest[64];
	uint64_t t = 0;

	memcpy(h, blake2b_iv, sizeof(h));
	/* Parameter block: digest length, no key, fanout 1, depth 1. */
	h[0] ^= 0x01010000ull ^ (uint64_t)outlen;
	/* Every block but the last is compressed straight from the input. */
	while (len > 128) {
		t += 128;
		blake2b_compress(h, p, t, 0);
		p += 128;
		len -= 128;
	}
	memset(last, 0, sizeof(last));
	if (len > 0)
		memcpy(last, p, len);
	t += len;
	blake2b_compress(h, last, t, 1);
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 8; j++)
			digest[8 * i + j] = (uint8_t)(h[i] >> (8 * j));
	memcpy(out, digest, outlen);
}
