/* SPDX-License-Identifier: ISC */
/*
 * swarm: the lifecycle of one volume's swarm (new, the tick, shutdown,
 * free), its status and statistics, and monitoring (rates, the VM's fault
 * latencies, the peer list). The other concerns have their own files
 * (listening and starting are conn.c's); see swarm_int.h.
 */
#include "swarm_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/listener.h>

#include "tclient.h"
#include "version.h"
#include "workq.h"

static void speer_rates_update(struct swarm *sw, double dt);

/*
 * End the run. Peers are told and given a moment to receive what is still
 * queued for them (a receipt acknowledgement, an ERROR) before the loop exits.
 */
void finish_run(struct swarm *sw, int result)
{
	struct timeval grace = {0, 300000};

	if (sw->finished)
		return;
	sw->finished = 1;
	sw->result = result;
	for (struct speer *sp = sw->conn.peers, *next; sp; sp = next) {
		next = sp->next;
		if (peer_is_ready(sp->p))
			peer_close_error(sp->p, WIRE_E_SHUTDOWN, "%s",
			                 result == 0 ? "done" : "shutting down");
	}
	event_base_loopexit(sw->o.base, &grace);
}

/* Update every peer's measured delivery rate (bytes/s, smoothed over about a second). */
static void rates_update(struct swarm *sw, uint64_t now)
{
	double dt = (double)(now - sw->rates.last_ns) / NS_PER_S;

	if (sw->rates.last_ns == 0 || dt <= 0) {
		sw->rates.last_ns = now;
		return;
	}
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		double inst = (double)sp->rx_bytes / dt;

		sp->pk.rate = sp->pk.rate == 0 ? inst : 0.75 * sp->pk.rate + 0.25 * inst;
		sp->rx_bytes = 0;
	}
	speer_rates_update(sw, dt);
	/* Whole-process rates for status: smoothed over about 2 s. */
	{
		double f = (double)(sw->st.bytes_fetched - sw->rates.last.bytes_fetched) / dt;
		double v = (double)(sw->st.bytes_served - sw->rates.last.bytes_served) / dt;
		double w = (double)(sw->st.bytes_written - sw->rates.last.bytes_written) / dt;

		sw->rates.fetch = 0.9 * sw->rates.fetch + 0.1 * f;
		sw->rates.serve = 0.9 * sw->rates.serve + 0.1 * v;
		sw->rates.write = 0.9 * sw->rates.write + 0.1 * w;
		sw->rates.last = sw->st;
	}
	sw->rates.last_ns = now;
}

/*
 * No progress for a while and not complete: say once what the volume waits
 * for, so that an operator (or a failed test's log) shows where it stands.
 */
static void report_stall(struct swarm *sw)
{
	static const char *const page_state[] = {"not asked", "asked", "loaded", "done"};
	uint32_t missing = 0, first = UINT32_MAX, holders = 0;

	if (!sw->have_root) {
		log_info("no progress for %d s: no peer has sent the manifest root yet",
		         SWARM_STALL_REPORT_S);
		return;
	}
	for (uint32_t c = 0; c < sw->root.chunk_count; c++)
		if (!bit_get(sw->chunks.avail, c)) {
			if (missing++ == 0)
				first = c;
		}
	if (first != UINT32_MAX)
		holders = sw->chunks.holders[first];
	log_info("no progress for %d s at generation %llu%s: %u of %u chunks missing, %u of %u "
	         "pages settled, %d transfers, %d verifying, %zu chunks to commit%s",
	         SWARM_STALL_REPORT_S, (unsigned long long)sw->root.generation,
	         root_final(sw) ? " (final)" : "", missing, sw->root.chunk_count, sw->pages.done,
	         sw->root.page_count, sw->pipe.nxfers, sw->pipe.nverifying,
	         (size_t)store_npending(&sw->store), sw->pipe.committing ? ", committing" : "");
	for (uint32_t pg = 0; pg < sw->root.page_count; pg++)
		if (sw->pages.status[pg] == PAGE_LOADED)
			log_info("  page %u: loaded, %u chunks not settled", pg,
			         sw->pages.left[pg]);
		else if (sw->pages.status[pg] != PAGE_DONE)
			log_info("  page %u: %s", pg, page_state[sw->pages.status[pg]]);
	if (first != UINT32_MAX)
		log_info("  first missing chunk %u: held by %u connected peer(s)%s%s%s", first,
		         holders, bit_get(sw->pipe.fetching, first) ? ", being fetched" : "",
		         bit_get(sw->gens.changed, first) ? ", changed by a delta" : "",
		         bit_get(sw->faults.urgent, first) ? ", faulted on" : "");
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct swarm *sw = arg;
	uint64_t now = now_ns();
	int alive;

	(void)fd;
	(void)what;
	if (sw->finished)
		return;
	rates_update(sw, now);
	rotate_slots(sw, now);
	conn_report(sw, now);
	if (sw->o.role != SWARM_FETCH) {
		if (!sw->o.image_fixed)
			seed_converge(sw, now);
		return;
	}
	if (store_npending(&sw->store) > 0 &&
	    now - sw->pipe.last_commit_ns >= (uint64_t)SWARM_COMMIT_MS * NS_PER_MS)
		commit_start(sw);
	alive = conn_redial(sw, now);
	if (sw->complete) {
		if (!root_final(sw))
			return;
		if (!sw->receipts.sent)
			send_receipt(sw);
		if (now >= sw->receipts.deadline_ns && !sw->st.receipt_acked &&
		    !sw->receipts.warned) {
			log_warn("neither the source nor a tracker acknowledged our receipt "
			         "within %d s",
			         SWARM_RECEIPT_WAIT_S);
			sw->receipts.warned = 1;
			if (!sw->exp.keep_running)
				finish_run(sw, 0);
		}
		return;
	}
	/* --lazy fetches only what the VM reads: while it asks for nothing, nothing is late. */
	if (sw->o.lazy && sw->have_root && sw->faults.nlist == 0)
		sw->last_progress_ns = now;
	if (alive == 0 && sw->conn.ntrackers == 0) {
		log_error("no usable peer left; last errors:");
		conn_log_errors(sw);
		finish_run(sw, -1);
		return;
	}
	if (now - sw->last_progress_ns > (uint64_t)SWARM_STALL_REPORT_S * NS_PER_S &&
	    sw->stall_reported_ns != sw->last_progress_ns) {
		sw->stall_reported_ns = sw->last_progress_ns;
		report_stall(sw);
	}
	if (sw->o.give_up_s > 0 &&
	    now - sw->last_progress_ns > (uint64_t)sw->o.give_up_s * NS_PER_S) {
		log_error("no progress for %d s; giving up (last errors:)", sw->o.give_up_s);
		conn_log_errors(sw);
		finish_run(sw, -1);
	}
}

/*
 * Our peer id at the trackers, BitTorrent-style (Azureus): "-PV", four
 * digits of the version (0.1.0 is 0100), "-", then random bytes.
 */
static void peer_id_make(uint8_t id[TCLIENT_PEER_ID_LEN])
{
	char tag[] = "-PV0000-";
	int k = 3;

	for (const char *v = P2PVBD_VERSION; *v != '\0' && k < 7; v++)
		if (*v >= '0' && *v <= '9')
			tag[k++] = *v;
	memcpy(id, tag, sizeof(tag) - 1);
	vcrypto_random(id + sizeof(tag) - 1, TCLIENT_PEER_ID_LEN - (sizeof(tag) - 1));
}

struct swarm *swarm_new(const struct swarm_opts *o)
{
	struct swarm *sw = xcalloc(1, sizeof(*sw));
	struct timeval tick = {0, 250000};

	sw->o = *o;
	sw->check = getenv("P2PVBD_CHECK") != NULL;
	conn_init(sw);
	manifest_receipt_key(sw->receipts.key, o->join_secret);
	sw->serve.page_buf = xmalloc(MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN);
	if (o->role == SWARM_SEED) {
		struct manifest *m = o->manifest;

		if (manifest_root_encode(&m->root, &sw->serve.root_blob,
		                         &sw->serve.root_blob_len) != 0)
			fatal("cannot encode the manifest root");
		sw->serve.map = bitmap_new(m->root.chunk_count);
		sw->serve.sent_count = xcalloc(m->root.chunk_count, 1);
		sw->live.dirty = bitmap_new(m->root.chunk_count);
		sw->live.rehash = bitmap_new(m->root.chunk_count);
		sw->pipe.syncq = workq_new(o->base, 1, "sync");
		sw->live.hashq = workq_new(o->base, 0, "rehash");
		if (sw->pipe.syncq == NULL || sw->live.hashq == NULL)
			fatal("cannot start worker threads");
		sw->live.round_ev = evtimer_new(o->base, seed_round_cb, sw);
		sw->live.throttle_ev = evtimer_new(o->base, seed_throttle_cb, sw);
		sw->live.tokens_ns = now_ns();
		sw->live.carried = xcalloc(m->root.chunk_count, sizeof(uint64_t));
		seed_lag_init(sw);
		for (uint32_t c = 0; c < m->root.chunk_count; c++)
			if (!(m->entries[c].flags & MANIFEST_F_ZERO))
				bit_set(sw->serve.map, c);
	} else {
		sw->pipe.verifyq = workq_new(o->base, 0, "verify");
		sw->pipe.syncq = workq_new(o->base, 1, "sync");
		if (sw->pipe.verifyq == NULL || sw->pipe.syncq == NULL)
			fatal("cannot start worker threads");
		for (int i = 0; i < o->npeers; i++)
			addr_add(sw, &o->peers[i], 0);
	}
	peer_id_make(sw->conn.peer_id);
	vcrypto_random(&sw->want.rng, sizeof(sw->want.rng));
	sw->want.rng |= 1; /* xorshift must not start at 0 */
	sw->pipe.basis_fd = -1;
	sw->pages.fd = -1;
	if (o->role == SWARM_FETCH && o->basis_path != NULL) {
		sw->pipe.basis_fd = open(o->basis_path, O_RDONLY | O_CLOEXEC);
		if (sw->pipe.basis_fd < 0)
			log_warn("cannot open the basis %s: %s; fetching everything", o->basis_path,
			         strerror(errno));
	}
	sw->last_progress_ns = now_ns();
	sw->tick = event_new(o->base, -1, EV_PERSIST, tick_cb, sw);
	sw->exp.wake_ev = event_new(o->base, -1, 0, chunk_wake_cb, sw);
	event_add(sw->tick, &tick);
	return sw;
}

int swarm_result(const struct swarm *sw)
{
	return sw->result;
}

void swarm_progress(const struct swarm *sw, uint64_t *done, uint64_t *total)
{
	if (sw->o.role == SWARM_SEED || !sw->have_root) {
		*done = 0;
		*total = 0;
		return;
	}
	*total = sw->root.image_size;
	/*
	 * Chunks held at start count before their pages are loaded (present_bytes);
	 * once every page was, only what is available counts (the store still
	 * holds the chunks a delta changed, at their old generation).
	 */
	if (sw->complete)
		*done = sw->root.image_size;
	else if (sw->pages.nseen == sw->root.page_count ||
	         sw->chunks.avail_bytes > store_present_bytes(&sw->store))
		*done = sw->chunks.avail_bytes;
	else
		*done = store_present_bytes(&sw->store);
	if (*done > *total)
		*done = *total;
}

void swarm_travel(const struct swarm *sw, uint64_t *done, uint64_t *total)
{
	swarm_progress(sw, done, total);
	if (*total == 0)
		return;
	*total -= sw->chunks.zeroed_bytes < *total ? sw->chunks.zeroed_bytes : *total;
	*done -= sw->chunks.zeroed_bytes < *done ? sw->chunks.zeroed_bytes : *done;
	if (*done > *total)
		*done = *total;
}

/*
 * A chunk the VM's read waits for, and since when. The table is open
 * addressing with linear probing, at most half full; it holds exactly the
 * chunks with their urgent bit set, which the export's bounded request queue
 * (and the chunk count) bound.
 */
struct fault_wait {
	uint32_t chunk;
	uint64_t since_ns; /* 0: the slot is free (the monotonic clock is never 0) */
};

const uint32_t swarm_fault_le_us[SWARM_FAULT_BUCKETS] = {
    1000,   2500,   5000,    10000,   25000,   50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static uint32_t fault_home(uint32_t chunk, uint32_t cap)
{
	return (chunk * 2654435761u) & (cap - 1); /* Knuth's multiplicative hash; cap is 2^k */
}

static void fault_put(struct fault_wait *tab, uint32_t cap, uint32_t chunk, uint64_t since)
{
	uint32_t i = fault_home(chunk, cap);

	while (tab[i].since_ns != 0)
		i = (i + 1) & (cap - 1);
	tab[i].chunk = chunk;
	tab[i].since_ns = since;
}

/* swarm_fault made chunk c urgent: its wait starts now. */
void fault_started(struct swarm *sw, uint32_t c)
{
	if (2 * (sw->faults.ntable + 1) > sw->faults.table_cap) {
		uint32_t cap = sw->faults.table_cap ? 2 * sw->faults.table_cap : 64;
		struct fault_wait *tab = xcalloc(cap, sizeof(*tab));

		for (uint32_t i = 0; i < sw->faults.table_cap; i++)
			if (sw->faults.table[i].since_ns != 0)
				fault_put(tab, cap, sw->faults.table[i].chunk,
				          sw->faults.table[i].since_ns);
		free(sw->faults.table);
		sw->faults.table = tab;
		sw->faults.table_cap = cap;
	}
	fault_put(sw->faults.table, sw->faults.table_cap, c, now_ns());
	sw->faults.ntable++;
}

/* Urgent chunk c is readable now (avail_set): its wait ends; into the histogram. */
void fault_settled(struct swarm *sw, uint32_t c)
{
	uint32_t mask = sw->faults.table_cap - 1, i, j;
	uint64_t waited_ns;
	int b = 0;

	if (sw->faults.ntable == 0)
		return;
	for (i = fault_home(c, sw->faults.table_cap); sw->faults.table[i].chunk != c;
	     i = (i + 1) & mask)
		if (sw->faults.table[i].since_ns == 0)
			return; /* not timed (cannot happen: every urgent bit has an entry) */
	if (sw->faults.table[i].since_ns == 0)
		return;
	waited_ns = now_ns() - sw->faults.table[i].since_ns;
	while (b < SWARM_FAULT_BUCKETS && waited_ns > (uint64_t)swarm_fault_le_us[b] * NS_PER_US)
		b++;
	sw->faults.hist.bucket[b]++;
	sw->faults.hist.count++;
	sw->faults.hist.sum_s += (double)waited_ns / NS_PER_S;
	/* Delete by shifting back the entries of the probe run that follow. */
	for (j = (i + 1) & mask; sw->faults.table[j].since_ns != 0; j = (j + 1) & mask) {
		uint32_t home = fault_home(sw->faults.table[j].chunk, sw->faults.table_cap);

		/* j's entry may fill the hole at i if its home is not in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			sw->faults.table[i] = sw->faults.table[j];
			i = j;
		}
	}
	sw->faults.table[i].since_ns = 0;
	sw->faults.ntable--;
}

/* Each peer's piece rates in and out, smoothed like the status rates (rates_update). */
static void speer_rates_update(struct swarm *sw, double dt)
{
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		double in = (double)(peer_bytes_in(sp->p) - sp->mon_in) / dt;
		double out = (double)(peer_bytes_out(sp->p) - sp->mon_out) / dt;

		sp->mon_in_rate = 0.9 * sp->mon_in_rate + 0.1 * in;
		sp->mon_out_rate = 0.9 * sp->mon_out_rate + 0.1 * out;
		sp->mon_in = peer_bytes_in(sp->p);
		sp->mon_out = peer_bytes_out(sp->p);
	}
}

int swarm_peer_list(const struct swarm *sw, struct swarm_peer_info *out, int max)
{
	int n = 0;

	for (const struct speer *sp = sw->conn.peers; sp; sp = sp->next) {
		struct swarm_peer_info *pi;

		if (!peer_is_ready(sp->p))
			continue;
		if (n++ >= max)
			continue;
		pi = &out[n - 1];
		memset(pi, 0, sizeof(*pi));
		snprintf(pi->address, sizeof(pi->address), "%s", peer_name(sp->p));
		pi->role = peer_is_source(sp->p) ? "source" : "peer";
		pi->fetch_rate = sp->mon_in_rate;
		pi->serve_rate = sp->mon_out_rate;
		pi->chunks = sp->pk.have != NULL ? (int64_t)sp->nhave : -1;
		pi->bytes_fetched = peer_bytes_in(sp->p);
		pi->bytes_served = peer_bytes_out(sp->p);
	}
	return n;
}

/* The monitoring fields of st (swarm_status fills the rest first). */
static void status_monitoring(const struct swarm *sw, struct swarm_status *st)
{
	memcpy(st->volume_id, sw->o.volume_id, sizeof(st->volume_id));
	st->output = is_seed(sw) ? sw->o.image_path : sw->o.out_path;
	st->receipts = sw->st.receipts;
	if (!is_seed(sw)) {
		uint64_t done, total;

		swarm_travel(sw, &done, &total); /* what the progress display counts too */
		st->bytes_left = total - done;
	}
	st->faults_waiting = sw->faults.ntable;
	st->fault_latency = sw->faults.hist;
	conn_status(sw, st);
}

void swarm_status(const struct swarm *sw, struct swarm_status *st)
{
	uint64_t total;

	memset(st, 0, sizeof(*st));
	st->seed = is_seed(sw);
	st->have_root = st->seed || sw->have_root;
	st->complete = st->seed || sw->complete;
	st->final = st->have_root && root_final(sw);
	if (st->have_root) {
		const struct manifest_root *r = root_of(sw);

		st->generation = r->generation;
		st->image_size = r->image_size;
		st->chunk_size = r->chunk_size;
		st->chunks_total = r->chunk_count;
	}
	swarm_progress(sw, &st->bytes_done, &total);
	for (struct speer *sp = sw->conn.peers; sp; sp = sp->next)
		st->peers += peer_is_ready(sp->p);
	st->fetch_rate = sw->rates.fetch;
	st->serve_rate = sw->rates.serve;
	st->write_rate = sw->rates.write;
	st->dirty_bytes = sw->st.chunks_dirty * (st->seed ? root_of(sw)->chunk_size : 0);
	st->lag_bytes = st->seed ? sw->live.lag_bytes : 0;
	st->auto_rate = st->seed ? sw->live.auto_rate : 0;
	st->downtime_target_ms = st->seed && !sw->o.image_fixed ? seed_downtime_target_ms(sw) : 0;
	status_monitoring(sw, st);
}

int swarm_complete(const struct swarm *sw)
{
	return sw->complete;
}

void swarm_output_unlock(struct swarm *sw)
{
	if (sw->store_open)
		store_unlock(&sw->store);
}

int swarm_output_relock(struct swarm *sw)
{
	return sw->store_open ? store_relock(&sw->store) : 0;
}

const struct swarm_stats *swarm_stats(const struct swarm *sw)
{
	return &sw->st;
}

void swarm_shutdown(struct swarm *sw)
{
	/* seed -e: the VM's writes at the source are durable before we exit. */
	if (sw->o.role == SWARM_SEED && sw->st.bytes_written > 0 && fdatasync(sw->o.image_fd) != 0)
		log_error("fdatasync of the image at shutdown: %s", strerror(errno));
	/* Everything flushed: chunk marks and the local VM's writes. */
	if (sw->store_open && (store_commit(&sw->store) < 0 || store_sync_data(&sw->store) < 0))
		log_error("could not make everything durable at shutdown");
	finish_run(sw, sw->complete || sw->o.role == SWARM_SEED ? 0 : -1);
}

void swarm_free(struct swarm *sw)
{
	if (sw == NULL)
		return;
	while (sw->conn.peers != NULL) {
		struct speer *sp = sw->conn.peers;

		if (!peer_is_dead(sp->p))
			peer_close(sp->p, "swarm freed");
		else
			speer_unlink_free(sw, sp);
	}
	/* Finish the workers' jobs (their done() callbacks still need the swarm). */
	sw->finished = 1;
	workq_free(sw->pipe.verifyq);
	workq_free(sw->pipe.syncq);
	workq_free(sw->live.hashq);
	waiters_call(&sw->live.freeze_waiters, -1);
	/* Flushes that never got a commit fail. */
	waiters_call(&sw->pipe.flush_next, -1);
	/* Trackers drop us at once instead of handing out our address until we time out. */
	tclient_stop_all(sw->conn.trackers, sw->conn.ntrackers);
	for (int i = 0; i < sw->conn.ntrackers; i++)
		tclient_free(sw->conn.trackers[i]);
	free(sw->conn.trackers);
	/* Let the deferred frees of the peers run. */
	event_base_loop(sw->o.base, EVLOOP_NONBLOCK);
	if (sw->conn.listener)
		evconnlistener_free(sw->conn.listener);
	if (sw->tick)
		event_free(sw->tick);
	if (sw->exp.wake_ev)
		event_free(sw->exp.wake_ev);
	if (sw->live.round_ev)
		event_free(sw->live.round_ev);
	if (sw->live.throttle_ev)
		event_free(sw->live.throttle_ev);
	free(sw->live.round);
	free(sw->live.dirty_list);
	free(sw->live.carried);
	free(sw->live.lagging);
	free(sw->live.rehash);
	free(sw->gens.stale);
	free(sw->gens.changed);
	free(sw->gens.changes);
	free(sw->gens.changed_tick);
	free(sw->gens.last_delta);
	for (int i = 0; i < sw->pipe.nxfers; i++)
		free(sw->pipe.xfers[i].buf);
	if (sw->pages.entries)
		for (uint32_t i = 0; i < sw->root.page_count; i++)
			free(sw->pages.entries[i]);
	free(sw->pages.entries);
	free(sw->pages.status);
	free(sw->pages.left);
	free(sw->pages.seen);
	free(sw->pages.from);
	free(sw->want.list);
	free(sw->chunks.avail);
	free(sw->chunks.zeroed);
	free(sw->chunks.local);
	free(sw->pipe.verifying);
	free(sw->faults.urgent);
	free(sw->pipe.basis_q);
	if (sw->pipe.basis_fd >= 0)
		close(sw->pipe.basis_fd);
	if (sw->pages.fd >= 0)
		close(sw->pages.fd);
	free(sw->pipe.fetching);
	free(sw->chunks.holders);
	free(sw->faults.list);
	free(sw->faults.table);
	free(sw->serve.map);
	free(sw->serve.sent_count);
	free(sw->live.dirty);
	free(sw->serve.root_blob);
	free(sw->serve.page_buf);
	free(sw->conn.addrs);
	free(sw->receipts.signers);
	free(sw->receipts.refused);
	vcrypto_wipe(sw->receipts.key, sizeof(sw->receipts.key));
	if (sw->store_open)
		store_close(&sw->store);
	if (sw->have_root)
		manifest_root_free(&sw->root);
	if (sw->conn.ctx.upload_limit)
		bufferevent_rate_limit_group_free(sw->conn.ctx.upload_limit);
	if (sw->conn.ctx.dns)
		evdns_base_free(sw->conn.ctx.dns, 0);
	vcrypto_wipe(sw->conn.ctx.join_secret, sizeof(sw->conn.ctx.join_secret));
	free(sw);
}
