/* SPDX-License-Identifier: ISC */
/*
 * extmap: which chunks of an image read as zeros, from an NBD server's block
 * status replies (the "base:allocation" meta context), so that a seed of an
 * NBD source never reads them. Pure: no I/O, no globals.
 *
 * The replies come from a server we do not trust, so each one is validated
 * whole before any of it is used (validate, then execute): it must start
 * where the previous one ended (extents arrive in order, without gaps or
 * overlaps), hold at least one extent, no extent of length zero, and none
 * that reaches past the end of the image. A malformed reply is refused
 * whole, and so is everything after it: the caller then reads the chunks
 * nothing marked, which is always safe (the hash is of what was read).
 *
 * A chunk is a zero chunk only if extents flagged NBD_STATE_ZERO cover every
 * byte of it. NBD_STATE_HOLE alone does not count: the NBD spec says a hole
 * may read as anything but zeros unless NBD_STATE_ZERO is set too (QEMU and
 * nbdkit report the holes of qcow2 and sparse files as HOLE|ZERO).
 */
#ifndef P2PVBD_EXTMAP_H
#define P2PVBD_EXTMAP_H

#include <stddef.h>
#include <stdint.h>

/* Block status flags of base:allocation (NBD protocol, "Metadata contexts"). */
#define EXTMAP_STATE_HOLE 1u /* NBD_STATE_HOLE: unallocated; says nothing of the content */
#define EXTMAP_STATE_ZERO 2u /* NBD_STATE_ZERO: reads as all zeros */

struct extmap {
	uint64_t size;        /* the image's size in bytes */
	uint32_t chunk_size;  /* > 0 */
	uint32_t chunk_count; /* ceil(size / chunk_size) */
	uint8_t *zero;        /* bit per chunk: reads as zeros (owned; bitmap_new) */
	uint32_t nzero;       /* bits set in zero */
	uint64_t next;        /* the replies so far described bytes [0, next) */
	uint64_t zrun; /* start of the run of zero extents that ends at next; if none, UINT64_MAX */
	uint32_t zfrom;  /* in that run: the first chunk not marked yet */
	const char *why; /* NULL, or why a reply was refused (then every later one is too) */
};

/*
 * An empty map for an image of size bytes in chunks of chunk_size (> 0), at
 * most UINT32_MAX chunks. 0, or -1 if those are out of range.
 */
int extmap_init(struct extmap *m, uint64_t size, uint32_t chunk_size);

/*
 * One block status reply: nr_entries / 2 extents (length, flags) from offset
 * off, as libnbd's extent callback passes them. 0 if taken; -1 if malformed
 * (m->why says how; m is unchanged by it and refuses every later reply).
 */
int extmap_add(struct extmap *m, uint64_t off, const uint32_t *entries, size_t nr_entries);

/* 1 if chunk c is known to read as zeros. */
int extmap_is_zero(const struct extmap *m, uint32_t c);

/* Give away the bitmap (a bit per chunk; the caller frees it); m is then empty. */
uint8_t *extmap_take(struct extmap *m);

void extmap_free(struct extmap *m);

#endif
