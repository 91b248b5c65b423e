/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for extmap_add (an NBD server's block status replies,
 * mapped onto chunks that read as zeros: untrusted bytes from the server a
 * seed reads). The input is the image geometry and a series of replies, each
 * with its offset and extents as libnbd would pass them. Invariants: nothing
 * crashes; a refused reply changes nothing and every later one is refused;
 * the cursor never passes the image's end; a chunk is marked if and only if
 * the ZERO extents of the accepted replies cover every byte of it (checked
 * against a byte model).
 *
 * Input: u16 size, u8 chunk size - 1, then replies: u8 header (low 5 bits:
 * entries, bit 7: an offset u16 follows, else the reply starts where the
 * last ended), entries as u16 pairs (length, flags).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "extmap.h"

/* Reads a little-endian u16 from the input, or returns 0 when it is used up. */
static int take16(const uint8_t **p, size_t *left, uint16_t *v)
{
	if (*left < 2)
		return 0;
	*v = (uint16_t)((*p)[0] | (*p)[1] << 8);
	*p += 2;
	*left -= 2;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t left = size;
	uint16_t isize;
	uint32_t cs;
	uint8_t *model, *before;
	struct extmap m;
	int refused = 0;

	if (!take16(&p, &left, &isize) || left < 1)
		return 0;
	cs = (uint32_t)*p + 1;
	p++, left--;
	if (extmap_init(&m, isize, cs) != 0)
		abort();
	model = calloc((size_t)isize + 1, 1);
	before = calloc(m.chunk_count / 8 + 1, 1);
	while (left > 0) {
		uint8_t hdr = *p++;
		uint32_t e[64];
		size_t n = hdr & 31;
		uint64_t off = m.next, pos;
		uint16_t v;
		int rc;

		left--;
		if ((hdr & 0x80) && take16(&p, &left, &v))
			off = v;
		for (size_t i = 0; i < n; i++) {
			if (!take16(&p, &left, &v)) {
				n = i;
				break;
			}
			e[i] = v;
		}
		memcpy(before, m.zero, m.chunk_count / 8 + 1);
		pos = m.next;
		rc = extmap_add(&m, off, e, n);
		if (rc != 0) {
			/* Refused: unchanged, and so is every later reply. */
			if (m.why == NULL || m.next != pos ||
			    memcmp(before, m.zero, m.chunk_count / 8 + 1) != 0)
				abort();
			refused = 1;
			continue;
		}
		if (refused || off != pos || m.next > isize)
			abort();
		for (size_t i = 0; i + 1 < n; i += 2) {
			if (e[i + 1] & EXTMAP_STATE_ZERO)
				memset(model + pos, 1, e[i]);
			pos += e[i];
		}
		if (pos != m.next)
			abort();
	}
	for (uint32_t c = 0; c < m.chunk_count; c++) {
		uint64_t a = (uint64_t)c * cs, b = a + cs > isize ? isize : a + cs;
		int all = 1;

		for (uint64_t i = a; i < b && all; i++)
			all = model[i];
		if (extmap_is_zero(&m, c) != all)
			abort();
	}
	extmap_free(&m);
	free(model);
	free(before);
	return 0;
}
