/* SPDX-License-Identifier: ISC */
/*
 * swarm_export: what the NBD export (nbd.c) asks of the swarm, at a
 * destination (fetch -e) and at the source (seed -e), and what starts the
 * export once the volume is known. All on the loop thread. Chunks are
 * readable once verified and written (durable or not), or zero, or written
 * by the local VM. swarm.h includes this header; the rest of the swarm's
 * API is there. The code: p2pvbd/swarm/export.c.
 */
#ifndef P2PVBD_SWARM_EXPORT_H
#define P2PVBD_SWARM_EXPORT_H

#include <stddef.h>
#include <stdint.h>

struct swarm;

/* fn runs from the event loop on its own, never inside a swarm_* call: it may call them. */
void swarm_set_chunk_cb(struct swarm *s, void (*fn)(void *arg, uint32_t chunk), void *arg);
/* fn(arg) runs once the signed root is verified and the output is open. */
void swarm_set_ready_cb(struct swarm *s, void (*fn)(void *arg), void *arg);
uint64_t swarm_volume_size(const struct swarm *s); /* 0 until the root is verified */
uint32_t swarm_chunk_size(const struct swarm *s);
int swarm_readable(const struct swarm *s, uint32_t chunk);
int swarm_is_zero(const struct swarm *s, uint32_t chunk); /* a hole of zeros */
/* A local write may go ahead now: readable, or (whole != 0) overwritten whole and safe to. */
int swarm_writable(struct swarm *s, uint32_t chunk, int whole);
/* The VM needs chunk: fetch it before anything else (readahead != 0: a hint, lower priority). */
void swarm_fault(struct swarm *s, uint32_t chunk, int readahead);
int swarm_read(struct swarm *s, uint64_t off, void *buf, size_t len);
/*
 * The VM's write of len bytes at off (data, or zeros if zero != 0; punch:
 * deallocate). Every chunk touched must be swarm_writable. The chunks become
 * local. 0 or -1; errno EROFS when a frozen source refuses it (nothing
 * written: the VM may retry it after a thaw).
 */
int swarm_local_write(struct swarm *s, uint64_t off, const void *data, uint64_t len, int zero,
                      int punch);
/* Call fn(arg, 0 or -1) once everything written so far is durable. */
void swarm_flush(struct swarm *s, void (*fn)(void *arg, int result), void *arg);
/* Keep running after completion (an export is being served) instead of exiting. */
void swarm_keep_running(struct swarm *s);

/*
 * chunk_cb's chunk is SWARM_ALL_CHUNKS when more than one chunk may have
 * changed state: the generation changed (final or not), or a seed's write
 * throttle has room again. Every waiting request looks again.
 */
#define SWARM_ALL_CHUNKS UINT32_MAX
/*
 * Whether the export may answer requests now: a destination only against a
 * final generation (PROTOCOL.md §9); the source always.
 */
int swarm_final(const struct swarm *s);

/*
 * Write-through (seed -e --write-through): fn(arg, 0) once every chunk of
 * [off, off + len) is published and a destination announced that it holds
 * it at that generation (-1 if the swarm stops first). At once otherwise.
 */
int swarm_write_through(const struct swarm *s);
void swarm_write_wait(struct swarm *s, uint64_t off, uint64_t len,
                      void (*fn)(void *arg, int result), void *arg);

#endif
