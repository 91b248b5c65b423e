/* SPDX-License-Identifier: ISC */
/*
 * swarm/live: the live source (seed -e). The VM's writes make chunks dirty;
 * rounds hash them again and publish signed deltas; freeze and thaw;
 * --write-through and --max-dirty-rate; the VM's writes and FLUSH.
 */
#include "swarm_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imgsrc.h"
#include "scan.h"
#include "seedgen.h"
#include "workq.h"

/*
 * seed -e: a round of rehashing the chunks the VM dirtied starts at most this
 * often (and at once at a freeze). Short rounds keep the dirty set small, so
 * that the freeze, which must hash what is left, stays short whatever was
 * dirtied before; each round costs two signatures and one DELTA per peer.
 */
#define SWARM_ROUND_MS 100

static void seed_round_end(struct swarm *sw);
static void seed_round_schedule(struct swarm *sw);

/* The root flags every generation of this source carries (not FINAL: that one is the freeze's). */
static uint16_t seed_root_flags(const struct swarm *sw)
{
	return sw->o.write_through ? MANIFEST_ROOT_F_WRITE_THROUGH : 0;
}

/*
 * Every chunk the VM writes becomes dirty (never served at its old hash).
 * Rounds, at most every SWARM_ROUND_MS, hash the dirty chunks again on the
 * workers and publish what changed as one signed delta (PROTOCOL.md §9). A
 * chunk written again while it was being hashed stays dirty for the next
 * round: every hash published is that of bytes that were in the image.
 */

/* Worker: read and hash one chunk. Touches only the job and the image source. */
void rehash_run(void *arg)
{
	struct rehash_job *j = arg;
	uint8_t *buf = xmalloc(j->len);

	j->result = imgsrc_pread(j->src, buf, j->len, j->off) == (ssize_t)j->len ? 0 : -1;
	if (j->result == 0) {
		vcrypto_hash(j->hash, buf, j->len);
		j->zero = scan_is_zero(buf, j->len);
	}
	free(buf);
}

static void rehash_done(void *arg)
{
	struct rehash_job *j = arg;
	struct swarm *sw = j->sw;

	if (--sw->live.round_left == 0)
		seed_round_end(sw);
}

/* seed -e: chunk c now differs from its published hash. */
static void seed_dirty(struct swarm *sw, uint32_t c)
{
	if (bit_get(sw->live.dirty, c))
		return;
	bit_set(sw->live.dirty, c);
	sw->live.dirty_list = xgrow(sw->live.dirty_list, &sw->live.dirty_cap, sw->live.ndirty,
	                            sizeof(*sw->live.dirty_list), 1024);
	sw->live.dirty_list[sw->live.ndirty++] = c;
	if (bit_get(sw->live.rehash, c))
		return; /* already counted and unserved */
	if (bit_get(sw->serve.map, c))
		sw->serve.nchunks--;
	bit_clear(sw->serve.map, c);
	sw->st.chunks_dirty++;
}

/* seed -e: chunk c is published again (changed or not): serve it and say so. */
static void seed_clean(struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *e = &sw->o.manifest->entries[c];

	sw->st.chunks_dirty--;
	if (!(e->flags & MANIFEST_F_ZERO))
		serve_add(sw, c, e->gen, 1);
}

/* --write-through: chunk c is published and a destination holds it at that generation. */
static int seed_carried(const struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *e = &sw->o.manifest->entries[c];

	if (bit_get(sw->live.dirty, c) || bit_get(sw->live.rehash, c))
		return 0;
	/* A zero chunk travels inside the signed delta itself. */
	return (e->flags & MANIFEST_F_ZERO) || sw->live.carried[c] == e->gen + 1;
}

/* --write-through: acknowledge the writes whose chunks are all carried now. */
static void wt_check(struct swarm *sw)
{
	struct flush_waiter **pp = &sw->live.wt_waiters;

	while (*pp != NULL) {
		struct flush_waiter *w = *pp;
		uint32_t c = w->first;

		while (c <= w->last && seed_carried(sw, c))
			c++;
		if (c <= w->last) {
			w->first = c; /* what is carried stays carried until written again */
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->fn(w->arg, 0);
		free(w);
	}
}

/*
 * Auto-converge (PROTOCOL.md §9.2): the copy's lag is the bytes of
 * published chunks that no destination holds at their generation. Every
 * SWARM_CONVERGE_WINDOW_MS, if a switchover now would cost more than the
 * target ((lag + dirty) / serving rate) and the lag did not shrink by a
 * tenth over the window, the VM's writes are capped, at SWARM_AUTO_STEP of their rate, and
 * lower at each such window after (as QEMU's auto-converge slows vCPUs);
 * once the cost is at most half the target, the cap is raised again step by
 * step and then lifted. --max-dirty-rate, if lower, still holds.
 */
#define SWARM_CONVERGE_WINDOW_MS 2000
#define SWARM_DOWNTIME_TARGET_MS 300
#define SWARM_AUTO_STEP          0.7
#define SWARM_AUTO_MIN_RATE      (64.0 * 1024)

uint32_t seed_downtime_target_ms(const struct swarm *sw)
{
	return sw->o.downtime_target_ms ? sw->o.downtime_target_ms : SWARM_DOWNTIME_TARGET_MS;
}

/* Chunk c's part of the lag, after its entry or who holds it changed. */
static void lag_update(struct swarm *sw, uint32_t c)
{
	const struct manifest_entry *e = &sw->o.manifest->entries[c];
	int lags = !(e->flags & MANIFEST_F_ZERO) && sw->live.carried[c] != e->gen + 1;

	if (lags == bit_get(sw->live.lagging, c))
		return;
	if (lags) {
		bit_set(sw->live.lagging, c);
		sw->live.lag_bytes += manifest_chunk_len(root_of(sw), c);
	} else {
		bit_clear(sw->live.lagging, c);
		sw->live.lag_bytes -= manifest_chunk_len(root_of(sw), c);
	}
}

void seed_lag_init(struct swarm *sw)
{
	sw->live.lagging = bitmap_new(chunk_count(sw));
	for (uint32_t c = 0; c < chunk_count(sw); c++)
		lag_update(sw, c);
	sw->live.lag_start = sw->live.lag_bytes;
	sw->live.converge_ns = now_ns();
}

void seed_converge(struct swarm *sw, uint64_t now)
{
	double target_s = seed_downtime_target_ms(sw) / (double)MS_PER_S, cost_s, serve, was;
	uint64_t lag = sw->live.lag_bytes,
	         dirty = (uint64_t)sw->st.chunks_dirty * root_of(sw)->chunk_size;
	char b1[16], b2[16];

	if (now - sw->live.converge_ns < (uint64_t)SWARM_CONVERGE_WINDOW_MS * NS_PER_MS)
		return;
	serve = sw->rates.serve > 1 ? sw->rates.serve : 1;
	cost_s = (double)(lag + dirty) / serve;
	was = sw->live.auto_rate;
	if (sw->o.no_auto_converge || sw->live.frozen || sw->rates.serve < 1) {
		/* Nothing to aim at without a destination being served. */
	} else if (cost_s > target_s && lag * 10 >= sw->live.lag_start * 9) {
		/* Above the target and not 10 % closer over the window: slower. */
		double base = was > 0 ? was : sw->rates.write;

		if (base >= SWARM_AUTO_MIN_RATE / SWARM_AUTO_STEP) {
			sw->live.auto_rate = base * SWARM_AUTO_STEP;
			log_warn(
			    "auto-converge: the copy does not converge (%s behind; a switchover "
			    "now would cost %.2f s, the target is %.2f s): the VM's writes are "
			    "capped at %s/s",
			    fmt_bytes(lag + dirty, b1, sizeof(b1)), cost_s, target_s,
			    fmt_bytes((uint64_t)sw->live.auto_rate, b2, sizeof(b2)));
		}
	} else if (was > 0 && cost_s <= target_s / 2) {
		sw->live.auto_rate = was / SWARM_AUTO_STEP;
		if (sw->live.auto_rate > 4 * sw->rates.write + 1024.0 * 1024) {
			sw->live.auto_rate = 0;
			log_info("auto-converge: the copy is within the target (%.2f s): the VM's "
			         "writes are no longer capped",
			         cost_s);
		}
	}
	sw->live.lag_start = lag;
	sw->live.converge_ns = now;
}

/* A destination announced chunk c at generation gen (it tells the source too). */
void seed_have(struct swarm *sw, const struct wire_msg *m)
{
	uint32_t c = m->u.have.chunk;

	if (sw->live.carried == NULL || c >= chunk_count(sw) ||
	    m->u.have.gen != sw->o.manifest->entries[c].gen)
		return;
	sw->live.carried[c] = m->u.have.gen + 1;
	lag_update(sw, c);
	if (sw->live.wt_waiters != NULL)
		wt_check(sw);
}

/* Sign and send one delta of n changes (ascending); 0 or -1. */
static int seed_delta(struct swarm *sw, const struct manifest_change *ch, uint32_t n,
                      uint16_t flags)
{
	struct manifest *m = sw->o.manifest;
	uint8_t *blob;
	size_t len;

	/* Never publish a generation a restart could publish again (rule 7). */
	if (sw->o.seedgen != NULL && seedgen_reserve(sw->o.seedgen, m->root.generation + 1) != 0)
		return -1;
	if (manifest_delta_make(m, ch, n, flags, sw->o.identity->sk, &blob, &len) != 0) {
		log_error("cannot make the delta of generation %llu",
		          (unsigned long long)m->root.generation + 1);
		return -1;
	}
	delta_keep(sw, blob, len);
	for (uint32_t i = 0; i < n; i++)
		lag_update(sw, ch[i].chunk);
	sw->st.deltas++;
	sw->st.chunks_changed += n;
	/* Receipts name a generation: those of older ones count no more. */
	sw->receipts.nsigners = 0;
	sw->st.receipts = 0;
	log_debug("generation %llu: %u chunks changed%s", (unsigned long long)m->root.generation, n,
	          (flags & MANIFEST_ROOT_F_FINAL) ? " (final)" : "");
	delta_broadcast(sw, NULL);
	/* Peers hear of the changed chunks after the delta that names them. */
	for (uint32_t i = 0; i < n; i++)
		seed_clean(sw, ch[i].chunk);
	return 0;
}

/*
 * Publish n changes (any number, ascending) as deltas of at most
 * MANIFEST_DELTA_MAX_CHANGES each. Frozen with nothing left dirty, the last
 * one is final (one without changes if need be) and the freeze is done.
 */
static void seed_publish(struct swarm *sw, const struct manifest_change *ch, uint32_t n)
{
	int final_due = sw->live.frozen && sw->live.ndirty == 0 && sw->live.round_left == 0;
	uint32_t done = 0;

	for (;;) {
		uint32_t k =
		    n - done < MANIFEST_DELTA_MAX_CHANGES ? n - done : MANIFEST_DELTA_MAX_CHANGES;
		int last = done + k == n;
		uint16_t flags =
		    (last && final_due ? MANIFEST_ROOT_F_FINAL : 0) | seed_root_flags(sw);

		if (k == 0 && (!(flags & MANIFEST_ROOT_F_FINAL) ||
		               (root_of(sw)->flags & MANIFEST_ROOT_F_FINAL)))
			break; /* nothing to say */
		if (seed_delta(sw, ch + done, k, flags) != 0) {
			waiters_call(&sw->live.freeze_waiters, -1);
			waiters_call(&sw->live.wt_waiters, -1);
			finish_run(sw, -1);
			return;
		}
		done += k;
		if (last)
			break;
	}
	if (sw->live.wt_waiters != NULL)
		wt_check(sw); /* zero chunks are carried by the delta */
	if (final_due) {
		log_info("frozen: generation %llu is final",
		         (unsigned long long)root_of(sw)->generation);
		waiters_call(&sw->live.freeze_waiters, 0);
	}
}

static int change_cmp(const void *a, const void *b)
{
	const struct manifest_change *x = a, *y = b;

	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/* Hash the dirty chunks again, on the workers. */
static void seed_round_start(struct swarm *sw)
{
	const struct manifest_root *r = root_of(sw);
	uint32_t n = sw->live.ndirty;

	if (sw->live.round_left > 0 || sw->finished)
		return;
	if (n == 0) {
		if (sw->live.frozen)
			seed_publish(sw, NULL, 0);
		return;
	}
	sw->live.round = xrealloc(sw->live.round, n * sizeof(*sw->live.round));
	sw->live.nround = n;
	sw->live.round_left = n;
	sw->live.ndirty = 0;
	sw->live.last_round_ns = now_ns();
	for (uint32_t i = 0; i < n; i++) {
		struct rehash_job *j = xcalloc(1, sizeof(*j));
		uint32_t c = sw->live.dirty_list[i];

		bit_clear(sw->live.dirty, c);
		bit_set(sw->live.rehash, c);
		j->sw = sw;
		j->src = sw->o.image_src;
		j->chunk = c;
		j->len = manifest_chunk_len(r, c);
		j->off = (uint64_t)c * r->chunk_size;
		sw->live.round[i] = j;
	}
	/* Pushed only now: a job may finish before the loop above is done. */
	for (uint32_t i = 0; i < n; i++)
		workq_push(sw->live.hashq, rehash_run, rehash_done, sw->live.round[i]);
}

/* A round is hashed: publish what changed; what was written meanwhile waits. */
static void seed_round_end(struct swarm *sw)
{
	const struct manifest_entry *entries = sw->o.manifest->entries;
	struct manifest_change *ch = xmalloc(sw->live.nround * sizeof(*ch) + 1);
	uint32_t n = 0;

	for (uint32_t i = 0; i < sw->live.nround; i++) {
		struct rehash_job *j = sw->live.round[i];
		uint32_t c = j->chunk;
		const struct manifest_entry *e = &entries[c];
		uint32_t zero = j->zero ? MANIFEST_F_ZERO : 0;

		bit_clear(sw->live.rehash, c);
		if (bit_get(sw->live.dirty, c)) {
			/* Written while it was hashed: its next round will tell. */
		} else if (j->result != 0) {
			log_error("cannot read chunk %u of the image to hash it; trying again", c);
			bit_set(sw->live.rehash, c); /* keeps it counted and unserved */
			seed_dirty(sw, c);
			bit_clear(sw->live.rehash, c);
		} else if ((e->flags & MANIFEST_F_ZERO) == zero &&
		           memcmp(e->hash, j->hash, VCRYPTO_HASH_LEN) == 0) {
			seed_clean(sw, c); /* written back as it was */
		} else {
			memset(&ch[n], 0, sizeof(ch[n]));
			ch[n].chunk = c;
			ch[n].entry.flags = zero;
			memcpy(ch[n].entry.hash, j->hash, VCRYPTO_HASH_LEN);
			n++;
		}
		free(j);
	}
	sw->live.nround = 0;
	if (!sw->finished) {
		qsort(ch, n, sizeof(*ch), change_cmp);
		seed_publish(sw, ch, n);
		seed_round_schedule(sw);
	}
	free(ch);
}

void seed_round_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	seed_round_start(arg);
}

/* Start the next round when due: SWARM_ROUND_MS after the last, at once when frozen. */
static void seed_round_schedule(struct swarm *sw)
{
	uint64_t now = now_ns(),
	         due = sw->live.last_round_ns + (uint64_t)SWARM_ROUND_MS * NS_PER_MS;
	struct timeval tv = {0, 0};

	if (sw->live.round_left > 0 || sw->finished || evtimer_pending(sw->live.round_ev, NULL) ||
	    (sw->live.ndirty == 0 && !sw->live.frozen))
		return;
	/* Write-through: every write waits for its round, so rounds follow at once. */
	if (!sw->live.frozen && !sw->o.write_through && now < due)
		tv.tv_usec = (suseconds_t)((due - now) / NS_PER_US);
	evtimer_add(sw->live.round_ev, &tv);
}

/*
 * --max-dirty-rate: a token bucket of the VM's write bytes (100 ms worth of
 * burst). Returns 1 if writes must wait; then a timer wakes them.
 */
int seed_throttled(struct swarm *sw)
{
	double rate = (double)sw->o.max_dirty_rate, burst, wait_s;
	uint64_t now;
	struct timeval tv;

	if (sw->live.auto_rate > 0 && (rate == 0 || sw->live.auto_rate < rate))
		rate = sw->live.auto_rate;
	if (rate == 0)
		return 0;
	burst = rate / 10;
	now = now_ns();
	if (burst < 256 * 1024)
		burst = 256 * 1024;
	sw->live.write_tokens += rate * (double)(now - sw->live.tokens_ns) / NS_PER_S;
	if (sw->live.write_tokens > burst)
		sw->live.write_tokens = burst;
	sw->live.tokens_ns = now;
	if (sw->live.write_tokens >= 0)
		return 0;
	if (!evtimer_pending(sw->live.throttle_ev, NULL)) {
		wait_s = -sw->live.write_tokens / rate;
		tv.tv_sec = (time_t)wait_s;
		tv.tv_usec = (suseconds_t)((wait_s - (double)tv.tv_sec) * US_PER_S) + 1;
		evtimer_add(sw->live.throttle_ev, &tv);
	}
	return 1;
}

void swarm_set_max_dirty_rate(struct swarm *sw, uint64_t rate)
{
	sw->o.max_dirty_rate = rate;
	sw->live.write_tokens = 0;
	sw->live.tokens_ns = now_ns();
}

void swarm_unthrottle(struct swarm *sw)
{
	sw->o.max_dirty_rate = 0;
	sw->o.no_auto_converge = 1;
	sw->live.auto_rate = 0;
	if (sw->live.throttle_ev != NULL)
		evtimer_del(sw->live.throttle_ev);
	if (sw->exp.chunk_cb != NULL)
		sw->exp.chunk_cb(sw->exp.chunk_cb_arg, SWARM_ALL_CHUNKS);
}

void seed_throttle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct swarm *sw = arg;

	(void)fd;
	(void)what;
	if (sw->exp.chunk_cb != NULL)
		sw->exp.chunk_cb(sw->exp.chunk_cb_arg, SWARM_ALL_CHUNKS);
}

void swarm_freeze(struct swarm *sw, void (*fn)(void *arg, int result), void *arg)
{
	struct flush_waiter *w;

	if (!is_seed(sw) || sw->finished) {
		fn(arg, -1);
		return;
	}
	if ((root_of(sw)->flags & MANIFEST_ROOT_F_FINAL) && sw->live.ndirty == 0 &&
	    sw->live.round_left == 0) {
		fn(arg, 0); /* final already (no VM here, or frozen before) */
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->next = sw->live.freeze_waiters;
	sw->live.freeze_waiters = w;
	if (!sw->live.frozen)
		log_info("freezing: writes are refused from now on; hashing %llu dirty chunks",
		         (unsigned long long)sw->st.chunks_dirty);
	sw->live.frozen = 1;
	seed_round_schedule(sw);
}

int swarm_write_through(const struct swarm *sw)
{
	return is_seed(sw) && sw->o.write_through;
}

void swarm_write_wait(struct swarm *sw, uint64_t off, uint64_t len,
                      void (*fn)(void *arg, int result), void *arg)
{
	const struct manifest_root *r = root_of(sw);
	struct flush_waiter *w;

	if (!swarm_write_through(sw) || len == 0) {
		fn(arg, 0);
		return;
	}
	w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->first = (uint32_t)(off / r->chunk_size);
	w->last = (uint32_t)((off + len - 1) / r->chunk_size);
	w->next = sw->live.wt_waiters;
	sw->live.wt_waiters = w;
	wt_check(sw);
}

void swarm_thaw(struct swarm *sw)
{
	if (!is_seed(sw) || (!sw->live.frozen && sw->live.freeze_waiters == NULL))
		return;
	sw->live.frozen = 0;
	waiters_call(&sw->live.freeze_waiters, -1);
	log_info("thawed: the VM may write again; the next generation is not final");
	if (root_of(sw)->flags & MANIFEST_ROOT_F_FINAL) {
		if (seed_delta(sw, NULL, 0, seed_root_flags(sw)) != 0)
			finish_run(sw, -1);
	}
	seed_round_schedule(sw);
}

/* seed -e: the VM's write at the source. Its chunks become dirty first. */
int seed_write(struct swarm *sw, uint64_t off, const void *data, uint64_t len, int zero, int punch)
{
	const struct manifest_root *r = root_of(sw);
	uint32_t first = (uint32_t)(off / r->chunk_size);
	uint32_t last = (uint32_t)((off + len - 1) / r->chunk_size);

	if (sw->live.frozen) {
		/* Never lose a write: refuse it, the VM sees an I/O error. */
		log_warn("refusing the VM's write of %llu bytes at %llu: the source is frozen",
		         (unsigned long long)len, (unsigned long long)off);
		sw->st.writes_refused++;
		errno = EROFS;
		return -1;
	}
	for (uint32_t c = first; c <= last; c++)
		seed_dirty(sw, c);
	seed_round_schedule(sw);
	sw->st.bytes_written += len;
	sw->live.write_tokens -= (double)len;
	if ((zero ? zero_at(sw->o.image_fd, off, len, punch)
	          : write_at(sw->o.image_fd, data, (size_t)len, off)) != 0) {
		log_error("writing the image at %llu: %s", (unsigned long long)off,
		          strerror(errno));
		return -1;
	}
	return 0;
}

/* seed -e: FLUSH makes the image durable (on the sync thread). */
struct seed_sync_job {
	struct swarm *sw;
	struct flush_waiter *waiters;
	int result;
};

static void seed_sync_run(void *arg)
{
	struct seed_sync_job *j = arg;

	j->result = fdatasync(j->sw->o.image_fd) == 0 ? 0 : -1;
	if (j->result != 0)
		log_error("fdatasync of the image: %s", strerror(errno));
}

static void seed_sync_done(void *arg)
{
	struct seed_sync_job *j = arg;

	waiters_call(&j->waiters, j->result);
	free(j);
}

/* seed -e: w waits for the image to be durable. */
void seed_flush(struct swarm *sw, struct flush_waiter *w)
{
	struct seed_sync_job *j = xcalloc(1, sizeof(*j));

	j->sw = sw;
	j->waiters = w;
	workq_push(sw->pipe.syncq, seed_sync_run, seed_sync_done, j);
}
