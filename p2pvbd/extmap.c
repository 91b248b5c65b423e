/* SPDX-License-Identifier: ISC */
/*
 * extmap: map an NBD server's block status extents onto chunks that read as
 * zeros (see extmap.h for the rules a reply must follow).
 */
#include "extmap.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define EXTMAP_NO_RUN UINT64_MAX

int extmap_init(struct extmap *m, uint64_t size, uint32_t chunk_size)
{
	uint64_t count;

	memset(m, 0, sizeof(*m));
	if (chunk_size == 0 || size > INT64_MAX)
		return -1;
	count = size / chunk_size + (size % chunk_size != 0);
	if (count > UINT32_MAX)
		return -1;
	m->size = size;
	m->chunk_size = chunk_size;
	m->chunk_count = (uint32_t)count;
	m->zero = bitmap_new(count);
	m->zrun = EXTMAP_NO_RUN;
	return 0;
}

/* Is the reply well formed, from where the last one ended? NULL, or what is wrong. */
static const char *extmap_check(const struct extmap *m, uint64_t off, const uint32_t *entries,
                                size_t nr_entries)
{
	uint64_t pos = off;

	if (m->why != NULL)
		return m->why;
	if (off != m->next)
		return off < m->next ? "a reply overlaps an earlier one (out of order)"
		                     : "a reply skips bytes (out of order)";
	if (nr_entries == 0 || nr_entries % 2 != 0)
		return nr_entries == 0 ? "a reply with no extent" : "a reply with half an extent";
	for (size_t i = 0; i < nr_entries; i += 2) {
		uint32_t len = entries[i];

		if (len == 0)
			return "an extent of length zero";
		if (len > m->size - pos)
			return "an extent beyond the end of the image";
		pos += len;
	}
	return NULL;
}

/* Mark the chunks that bytes [m->zrun, end) of zeros now cover whole. */
static void extmap_mark(struct extmap *m, uint64_t end)
{
	/* Chunks end at multiples of the chunk size, the last one at the image's end. */
	uint64_t upto = end == m->size ? m->chunk_count : end / m->chunk_size;

	for (uint64_t c = m->zfrom; c < upto; c++) {
		if (!bit_get(m->zero, (uint32_t)c)) {
			bit_set(m->zero, (uint32_t)c);
			m->nzero++;
		}
	}
	if (upto > m->zfrom)
		m->zfrom = (uint32_t)upto;
}

int extmap_add(struct extmap *m, uint64_t off, const uint32_t *entries, size_t nr_entries)
{
	const char *why = extmap_check(m, off, entries, nr_entries);

	if (why != NULL) {
		m->why = why;
		return -1;
	}
	for (size_t i = 0; i < nr_entries; i += 2) {
		uint64_t end = m->next + entries[i];

		if (!(entries[i + 1] & EXTMAP_STATE_ZERO)) {
			m->zrun = EXTMAP_NO_RUN;
		} else {
			if (m->zrun == EXTMAP_NO_RUN) {
				/* The first chunk that starts at or after the run's start. */
				m->zrun = m->next;
				m->zfrom =
				    (uint32_t)((m->zrun + m->chunk_size - 1) / m->chunk_size);
			}
			extmap_mark(m, end);
		}
		m->next = end;
	}
	return 0;
}

int extmap_is_zero(const struct extmap *m, uint32_t c)
{
	return m->zero != NULL && c < m->chunk_count && bit_get(m->zero, c);
}

uint8_t *extmap_take(struct extmap *m)
{
	uint8_t *z = m->zero;

	m->zero = NULL;
	return z;
}

void extmap_free(struct extmap *m)
{
	free(m->zero);
	m->zero = NULL;
}
