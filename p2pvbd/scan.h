/* SPDX-License-Identifier: ISC */
/*
 * scan: hash an image into manifest entries, with worker threads (one per
 * core by default), each reading and hashing whole chunks. Used by seed at
 * start (and by fetch --basis later).
 */
#ifndef P2PVBD_SCAN_H
#define P2PVBD_SCAN_H

#include <stdint.h>

#include "manifest.h"

struct imgsrc;

/* Called from the calling thread about every 200 ms with bytes hashed so far. */
typedef void (*scan_progress_fn)(uint64_t done, uint64_t total, void *arg);

/*
 * Hash every chunk of fd (image_size bytes) into entries[chunk_count]:
 * hash = BLAKE2b-256 of the chunk, flags = MANIFEST_F_ZERO if all zero,
 * gen = gen. nthreads <= 0 means one per online CPU. 0 or -1 (read error,
 * logged with the offset).
 */
int scan_image(int fd, uint64_t image_size, uint32_t chunk_size, uint64_t gen, int nthreads,
               struct manifest_entry *entries, scan_progress_fn progress, void *arg);

/*
 * The same for any image source (imgsrc.h; its size is the image's): chunks
 * the source says read as zeros (an NBD server's block status) are zero
 * chunks without being read. *bytes_read: the bytes actually read.
 */
int scan_source(struct imgsrc *src, uint32_t chunk_size, uint64_t gen, int nthreads,
                struct manifest_entry *entries, scan_progress_fn progress, void *arg,
                uint64_t *bytes_read);

/* 1 if len bytes at p are all zero. Fast (word at a time). */
int scan_is_zero(const void *p, size_t len);

#endif
