/* SPDX-License-Identifier: ISC */
/*
 * swarm/export: the API the NBD export uses (swarm_export.h): what is
 * readable or writable, the VM's faults, reads and writes, FLUSH, and
 * waking the export's parked requests from the loop.
 */
#include "swarm_int.h"

#include <stdlib.h>

/*
 * The export's requests waiting for chunk c (SWARM_ALL_CHUNKS: for any) may
 * go now. They are woken from the loop, never from here: a woken request
 * calls back into the swarm (a write makes chunks local, a read faults),
 * which must not happen in the middle of the bookkeeping that made c
 * available (a page being loaded, a delta being applied, a chunk being
 * added to the served set).
 */
void chunk_wake(struct swarm *sw, uint32_t c)
{
	if (sw->exp.chunk_cb == NULL)
		return;
	if (!sw->exp.wake_pending)
		sw->exp.wake_chunk = c;
	else if (sw->exp.wake_chunk != c)
		sw->exp.wake_chunk = SWARM_ALL_CHUNKS;
	sw->exp.wake_pending = 1;
	event_active(sw->exp.wake_ev, 0, 0);
}

void chunk_wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct swarm *sw = arg;

	(void)fd;
	(void)what;
	if (!sw->exp.wake_pending)
		return;
	sw->exp.wake_pending = 0;
	if (sw->exp.chunk_cb != NULL)
		sw->exp.chunk_cb(sw->exp.chunk_cb_arg, sw->exp.wake_chunk);
}

void swarm_set_chunk_cb(struct swarm *sw, void (*fn)(void *arg, uint32_t chunk), void *arg)
{
	sw->exp.chunk_cb = fn;
	sw->exp.chunk_cb_arg = arg;
}

void swarm_set_ready_cb(struct swarm *sw, void (*fn)(void *arg), void *arg)
{
	sw->exp.ready_cb = fn;
	sw->exp.ready_cb_arg = arg;
}

/*
 * The export API serves the source's own image too (seed -e: the VM runs on
 * the source and writes through us). There every chunk is readable and
 * writable; a write makes its chunks dirty: never served to peers again at
 * the generation they were hashed at (§7.3).
 */

uint64_t swarm_volume_size(const struct swarm *sw)
{
	return is_seed(sw) || sw->have_root ? root_of(sw)->image_size : 0;
}

uint32_t swarm_chunk_size(const struct swarm *sw)
{
	return is_seed(sw) || sw->have_root ? root_of(sw)->chunk_size : 0;
}

int swarm_final(const struct swarm *sw)
{
	return is_seed(sw) || (sw->have_root && root_final(sw));
}

int swarm_readable(const struct swarm *sw, uint32_t chunk)
{
	if (is_seed(sw))
		return chunk < root_of(sw)->chunk_count;
	return sw->have_root && chunk < sw->root.chunk_count && bit_get(sw->chunks.avail, chunk);
}

int swarm_is_zero(const struct swarm *sw, uint32_t chunk)
{
	if (is_seed(sw))
		return chunk < root_of(sw)->chunk_count && !bit_get(sw->live.dirty, chunk) &&
		       !bit_get(sw->live.rehash, chunk) &&
		       (sw->o.manifest->entries[chunk].flags & MANIFEST_F_ZERO);
	return sw->have_root && chunk < sw->root.chunk_count && !bit_get(sw->chunks.local, chunk) &&
	       bit_get(sw->chunks.avail, chunk) && store_state_of(&sw->store, chunk) == STORE_ZERO;
}

int swarm_writable(struct swarm *sw, uint32_t chunk, int whole)
{
	if (is_seed(sw))
		return chunk < root_of(sw)->chunk_count && !seed_throttled(sw);
	if (!sw->have_root || chunk >= sw->root.chunk_count)
		return 0;
	if (bit_get(sw->chunks.avail, chunk))
		return 1;
	/* A whole-chunk write needs no fetch, but must not race the worker that
	 * may be writing the fetched copy. */
	return whole && !bit_get(sw->pipe.verifying, chunk);
}

void swarm_fault(struct swarm *sw, uint32_t chunk, int readahead)
{
	if (is_seed(sw))
		return; /* the source has everything */
	if (!sw->have_root || chunk >= sw->root.chunk_count || sw->finished ||
	    bit_get(sw->chunks.avail, chunk) || bit_get(sw->faults.urgent, chunk))
		return;
	if (readahead) {
		/* Readahead is a hint: only start it if nothing is in flight for it. */
		struct pick_view v = pick_view_of(sw);
		struct speer *sp;

		if (!pick_readahead(&v, chunk))
			return;
		sp = best_peer_for(sw, chunk);
		if (sp != NULL)
			xfer_start(sw, sp, chunk,
			           sw->o.no_boost ? WIRE_PRIO_BACKGROUND : WIRE_PRIO_READAHEAD);
		return;
	}
	bit_set(sw->faults.urgent, chunk);
	fault_started(sw, chunk);
	sw->faults.list = xgrow(sw->faults.list, &sw->faults.list_cap, sw->faults.nlist,
	                        sizeof(*sw->faults.list), 64);
	sw->faults.list[sw->faults.nlist++] = chunk;
	fetch_urgent(sw, chunk);
}

int swarm_read(struct swarm *sw, uint64_t off, void *buf, size_t len)
{
	if (is_seed(sw))
		return serve_fill(sw, buf, len, off);
	return store_read(&sw->store, off, buf, len);
}

int swarm_local_write(struct swarm *sw, uint64_t off, const void *data, uint64_t len, int zero,
                      int punch)
{
	uint32_t cs, first, last;
	int settled = 0, rc;

	if (len == 0)
		return 0;
	if (is_seed(sw))
		return seed_write(sw, off, data, len, zero, punch);
	cs = sw->root.chunk_size;
	first = (uint32_t)(off / cs);
	last = (uint32_t)((off + len - 1) / cs);
	for (uint32_t c = first; c <= last; c++) {
		if (store_mark_local(&sw->store, c) != 0)
			return -1;
		if (!bit_get(sw->chunks.local, c)) {
			bit_set(sw->chunks.local, c);
			if (bit_get(sw->serve.map, c))
				sw->serve.nchunks--;
			bit_clear(sw->serve.map, c);
			/*
			 * A chunk the VM wrote whole is done as far as fetching goes:
			 * transfers of it are taken back (the VM's data wins) and its
			 * page counts it now. (Not being verified: swarm_writable.)
			 */
			if (!bit_get(sw->chunks.avail, c)) {
				xfer_cancel_chunk(sw, c);
				if (sw->pages.entries != NULL &&
				    sw->pages.status[c / MANIFEST_PAGE_ENTRIES] == PAGE_LOADED) {
					uint32_t page = c / MANIFEST_PAGE_ENTRIES;

					if (--sw->pages.left[page] == 0)
						page_done(sw, page);
					settled = 1;
				}
			}
			avail_set(sw, c);
			bit_clear(sw->faults.urgent, c);
		}
	}
	rc = zero ? store_zero_range(&sw->store, off, len, punch)
	          : store_write_range(&sw->store, off, data, (size_t)len);
	check_pages(sw, "a write of the VM");
	/* The write may have settled the last chunk the volume lacked. */
	if (rc == 0 && settled)
		fetch_schedule(sw);
	return rc;
}

void swarm_keep_running(struct swarm *sw)
{
	sw->exp.keep_running = 1;
}

/* Call every waiter of the list *head with result, each taken off the list first. */
void waiters_call(struct flush_waiter **head, int result)
{
	while (*head != NULL) {
		struct flush_waiter *w = *head;

		*head = w->next;
		w->fn(w->arg, result);
		free(w);
	}
}

void swarm_flush(struct swarm *sw, void (*fn)(void *arg, int result), void *arg)
{
	struct flush_waiter *w = xcalloc(1, sizeof(*w));

	w->fn = fn;
	w->arg = arg;
	if (is_seed(sw)) {
		seed_flush(sw, w);
		return;
	}
	w->next = sw->pipe.flush_next;
	sw->pipe.flush_next = w;
	commit_start(sw);
}
