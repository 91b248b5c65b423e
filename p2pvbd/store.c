/* SPDX-License-Identifier: ISC */
/*
 * store: the output image plus its crash-safe per-chunk state file.
 *
 * Two invariants hold at every instant, so that a crash anywhere is safe:
 *  - a record in the state file says PRESENT or ZERO only if the image
 *    durably holds that chunk's bytes for that generation: data is synced
 *    before its record is written (store_commit), and a chunk whose data is
 *    about to change is first marked MISSING durably (store_put over a
 *    committed chunk);
 *  - the state file exists only if the image exists with its final size,
 *    and it is never seen half written (it is created under a temporary
 *    name and renamed into place).
 *
 * s->rec mirrors the records. After the image data is synced, the mirror
 * is updated even if writing the records then fails: the data is durable,
 * so serving it is right, and on restart the chunk is merely refetched.
 */
#include "store.h"
#include "store_int.h"
#include "imglock.h"
#include "util.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* First allocation of the pending list; it doubles from there. */
#define STORE_PENDING_INIT 64

static int id_is_none(const uint8_t id[STORE_ID_LEN])
{
	static const uint8_t none[STORE_ID_LEN];

	return memcmp(id, none, STORE_ID_LEN) == 0;
}

uint32_t store_chunk_len(const struct store *s, uint32_t chunk)
{
	if (chunk >= s->chunk_count)
		return 0;
	if (chunk + 1 < s->chunk_count)
		return s->chunk_size;
	return (uint32_t)(s->image_size - (uint64_t)chunk * s->chunk_size);
}

static void store_free(struct store *s)
{
	imglock_release(s->lock);
	if (s->img_fd >= 0)
		close(s->img_fd);
	if (s->state_fd >= 0)
		close(s->state_fd);
	free(s->img_path);
	free(s->state_path);
	free(s->rec);
	free(s->id);
	free(s->pending);
	free(s->pending_state);
	free(s->pending_gen);
	free(s->pending_id);
	memset(s, 0, sizeof(*s));
	s->img_fd = -1;
	s->state_fd = -1;
}

/* Size of the open image: st_size, or the device size for a block device. */
static int image_size_of(struct store *s, const struct stat *st, uint64_t *size)
{
	if (S_ISREG(st->st_mode)) {
		*size = (uint64_t)st->st_size;
		return 0;
	}
	if (ioctl(s->img_fd, BLKGETSIZE64, size) < 0) {
		log_error("store: size of block device %s: %s", s->img_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Give a new or taken-over image its size, durably, before a state file names it. */
static int image_prepare(struct store *s, const struct stat *st, uint64_t cur_size)
{
	if (S_ISBLK(st->st_mode)) {
		if (cur_size < s->image_size) {
			log_error("store: block device %s has %llu bytes, the volume needs %llu",
			          s->img_path, (unsigned long long)cur_size,
			          (unsigned long long)s->image_size);
			return -1;
		}
	} else if (cur_size != s->image_size && ftruncate(s->img_fd, (off_t)s->image_size) < 0) {
		log_error("store: sizing %s to %llu bytes: %s", s->img_path,
		          (unsigned long long)s->image_size, strerror(errno));
		return -1;
	}
	if (fsync(s->img_fd) < 0) {
		log_error("store: syncing %s: %s", s->img_path, strerror(errno));
		return -1;
	}
	return fsync_dir_of(s->img_path);
}

int store_open(struct store *s, const char *path, const uint8_t volume_id[MANIFEST_ID_LEN],
               uint64_t image_size, uint32_t chunk_size, int flags)
{
	return store_open_at(s, path, path, volume_id, image_size, chunk_size, flags);
}

int store_open_at(struct store *s, const char *path, const char *sidecar,
                  const uint8_t volume_id[MANIFEST_ID_LEN], uint64_t image_size,
                  uint32_t chunk_size, int flags)
{
	uint64_t count, cur_size;
	struct stat st;
	int created = 0, have_state;

	memset(s, 0, sizeof(*s));
	s->img_fd = -1;
	s->state_fd = -1;
	if (chunk_size == 0 || image_size == 0) {
		log_error("store: %s: image size %llu and chunk size %u must not be zero", path,
		          (unsigned long long)image_size, chunk_size);
		return -1;
	}
	count = image_size / chunk_size + (image_size % chunk_size != 0);
	if (count > UINT32_MAX || image_size > INT64_MAX) {
		log_error("store: %s: image size %llu is too large for chunk size %u", path,
		          (unsigned long long)image_size, chunk_size);
		return -1;
	}
	s->img_path = xstrdup(path);
	s->state_path = xasprintf("%s%s", sidecar, STORE_STATE_SUFFIX);
	memcpy(s->volume_id, volume_id, MANIFEST_ID_LEN);
	s->image_size = image_size;
	s->chunk_size = chunk_size;
	s->chunk_count = (uint32_t)count;

	s->state_fd = open(s->state_path, O_RDWR | O_CLOEXEC);
	if (s->state_fd < 0 && errno != ENOENT) {
		log_error("store: opening %s: %s", s->state_path, strerror(errno));
		goto fail;
	}
	have_state = s->state_fd >= 0;

	s->img_fd = open(path, O_RDWR | O_CLOEXEC);
	if (s->img_fd < 0 && errno == ENOENT && !have_state && (flags & STORE_F_CREATE)) {
		/* A VM's disk: readable by its owner only. */
		s->img_fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		created = s->img_fd >= 0;
	}
	if (s->img_fd < 0) {
		if (errno == ENOENT && have_state)
			log_error("store: %s exists but the image %s does not; remove the state "
			          "file to start over",
			          s->state_path, path);
		else
			log_error("store: opening %s: %s", path, strerror(errno));
		goto fail;
	}
	/*
	 * Two processes filling one image would each trust marks the other
	 * wrote, and QEMU must not use it while it is filled: an exclusive
	 * QEMU-style lock. Where the file system has no OFD locks, flock still
	 * keeps two p2pvbd processes apart (not together with the OFD lock: on
	 * NFS flock is a whole-file fcntl lock, which would conflict with it).
	 */
	if (imglock_acquire(path, s->img_fd, IMGLOCK_EXCLUSIVE, &s->lock) != 0)
		goto fail;
	if (s->lock == NULL && flock(s->img_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			log_error("store: %s is in use by another p2pvbd process", path);
		else
			log_error("store: locking %s: %s", path, strerror(errno));
		goto fail;
	}
	if (fstat(s->img_fd, &st) < 0) {
		log_error("store: %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error("store: %s is neither a regular file nor a block device", path);
		goto fail;
	}
	if (image_size_of(s, &st, &cur_size) < 0)
		goto fail;

	if (have_state) {
		if (store_state_load(s) < 0)
			goto fail;
		if (S_ISREG(st.st_mode) ? cur_size != image_size : cur_size < image_size) {
			log_error("store: image %s has %llu bytes, its state file says %llu", path,
			          (unsigned long long)cur_size, (unsigned long long)image_size);
			goto fail;
		}
	} else {
		if (!created && (S_ISBLK(st.st_mode) || cur_size > 0) && !(flags & STORE_F_FORCE)) {
			log_error("store: %s exists and is not a p2pvbd output; use --force to "
			          "overwrite it",
			          path);
			goto fail;
		}
		if (image_prepare(s, &st, cur_size) < 0 || store_state_create(s) < 0)
			goto fail;
	}

	for (uint32_t i = 0; i < s->chunk_count; i++) {
		if (store_state_of(s, i) != STORE_MISSING)
			s->present_bytes += store_chunk_len(s, i);
	}
	return 0;
fail:
	if (created)
		unlink(path);
	store_free(s);
	return -1;
}

uint32_t store_npending(const struct store *s)
{
	return s->npending;
}

uint64_t store_pending_bytes(const struct store *s)
{
	return s->pending_bytes;
}

uint64_t store_present_bytes(const struct store *s)
{
	return s->present_bytes;
}

void store_unlock(struct store *s)
{
	imglock_release(s->lock);
	s->lock = NULL;
	s->unlocked = 1;
}

int store_relock(struct store *s)
{
	if (!s->unlocked)
		return 0;
	if (imglock_acquire(s->img_path, s->img_fd, IMGLOCK_EXCLUSIVE, &s->lock) != 0)
		return -1;
	s->unlocked = 0;
	return 0;
}

/* Index of chunk in the pending list, or -1. */
static long pending_find(const struct store *s, uint32_t chunk)
{
	for (uint32_t i = 0; i < s->npending; i++) {
		if (s->pending[i] == chunk)
			return (long)i;
	}
	return -1;
}

/* Bytes of unsynced image data a pending entry stands for. */
static uint64_t pending_data_bytes(const struct store *s, uint32_t chunk, uint8_t state)
{
	return state == STORE_PRESENT ? store_chunk_len(s, chunk) : 0;
}

/* id: the content id the chunk will hold (STORE_ID_LEN bytes), or NULL for none (LOCAL). */
static void pending_add(struct store *s, uint32_t chunk, uint64_t gen, uint8_t state,
                        const uint8_t *id)
{
	long i = pending_find(s, chunk);

	if (i < 0) {
		if (s->npending == s->pending_cap) {
			s->pending_cap = s->pending_cap ? 2 * s->pending_cap : STORE_PENDING_INIT;
			s->pending = xrealloc(s->pending, s->pending_cap * sizeof(*s->pending));
			s->pending_state =
			    xrealloc(s->pending_state, s->pending_cap * sizeof(*s->pending_state));
			s->pending_gen =
			    xrealloc(s->pending_gen, s->pending_cap * sizeof(*s->pending_gen));
			s->pending_id =
			    xrealloc(s->pending_id, s->pending_cap * sizeof(*s->pending_id));
		}
		i = (long)s->npending++;
		s->pending[i] = chunk;
	} else {
		s->pending_bytes -= pending_data_bytes(s, chunk, s->pending_state[i]);
	}
	s->pending_state[i] = state;
	s->pending_gen[i] = gen;
	if (id != NULL)
		memcpy(s->pending_id[i], id, STORE_ID_LEN);
	else
		memset(s->pending_id[i], 0, STORE_ID_LEN);
	s->pending_bytes += pending_data_bytes(s, chunk, state);
}

static void pending_remove(struct store *s, uint32_t chunk)
{
	long i = pending_find(s, chunk);
	uint32_t last;

	if (i < 0)
		return;
	s->pending_bytes -= pending_data_bytes(s, chunk, s->pending_state[i]);
	last = --s->npending;
	s->pending[i] = s->pending[last];
	s->pending_state[i] = s->pending_state[last];
	s->pending_gen[i] = s->pending_gen[last];
	memcpy(s->pending_id[i], s->pending_id[last], STORE_ID_LEN);
}

static void pending_clear(struct store *s)
{
	s->npending = 0;
	s->pending_bytes = 0;
}

static int batch_withdraw(struct store *s, uint32_t chunk);

/* Durably mark chunk MISSING, keeping its generation. */
static int mark_missing(struct store *s, uint32_t chunk)
{
	uint64_t rec = (s->rec[chunk] >> 8) << 8 | STORE_MISSING;

	if (store_state_write_rec(s, chunk, rec, "missing") < 0)
		return -1;
	if (store_state_of(s, chunk) != STORE_MISSING)
		s->present_bytes -= store_chunk_len(s, chunk);
	s->rec[chunk] = rec;
	memset(s->id[chunk], 0, STORE_ID_LEN);
	return 0;
}

/* Common checks of store_put and store_put_zero. */
static int put_check(struct store *s, uint32_t chunk, uint64_t gen, const char *what)
{
	if (chunk >= s->chunk_count) {
		log_error("store: %s: chunk %u out of range (%u chunks)", what, chunk,
		          s->chunk_count);
		return -1;
	}
	if (gen > STORE_GEN_MAX) {
		log_error("store: %s: generation %llu of chunk %u is too large", what,
		          (unsigned long long)gen, chunk);
		return -1;
	}
	if (store_state_of(s, chunk) == STORE_LOCAL) {
		log_error("store: %s: chunk %u holds the local VM's writes; not overwriting it",
		          what, chunk);
		return -1;
	}
	return 0;
}

int store_put_begin(struct store *s, uint32_t chunk, uint64_t gen, size_t len)
{
	if (put_check(s, chunk, gen, "put") < 0)
		return -1;
	if (len != store_chunk_len(s, chunk)) {
		log_error("store: put: chunk %u has %u bytes, got %zu", chunk,
		          store_chunk_len(s, chunk), len);
		return -1;
	}
	/* Its committed mark must not outlive the data it vouches for. */
	if ((batch_withdraw(s, chunk) || store_state_of(s, chunk) != STORE_MISSING) &&
	    mark_missing(s, chunk) < 0)
		return -1;
	/* Its bytes are about to change: they are nothing until store_put_end. */
	memset(s->id[chunk], 0, STORE_ID_LEN);
	return 0;
}

int store_write(const struct store *s, uint32_t chunk, const void *data, size_t len)
{
	if (write_at(s->img_fd, data, len, (uint64_t)chunk * s->chunk_size) < 0) {
		log_error("store: writing chunk %u to %s: %s", chunk, s->img_path, strerror(errno));
		return -1;
	}
	return 0;
}

void store_put_end(struct store *s, uint32_t chunk, uint64_t gen, const uint8_t *hash)
{
	pending_add(s, chunk, gen, STORE_PRESENT, hash);
	/* The state stays MISSING until the commit; the generation and content
	 * of the data now in the image are known at once (store_gen_of, for
	 * serving it; store_holds). */
	s->rec[chunk] = gen << 8 | (s->rec[chunk] & 0xff);
	memcpy(s->id[chunk], hash, STORE_ID_LEN);
}

int store_put(struct store *s, uint32_t chunk, uint64_t gen, const uint8_t *hash, const void *data,
              size_t len)
{
	if (store_put_begin(s, chunk, gen, len) < 0 || store_write(s, chunk, data, len) < 0)
		return -1;
	store_put_end(s, chunk, gen, hash);
	return 0;
}

static int zero_range(struct store *s, uint32_t chunk)
{
	uint64_t off = (uint64_t)chunk * s->chunk_size;
	uint64_t len = store_chunk_len(s, chunk);

	if (zero_at(s->img_fd, off, len, 1) < 0) {
		log_error("store: zeroing chunk %u of %s: %s", chunk, s->img_path, strerror(errno));
		return -1;
	}
	return 0;
}

int store_put_zero(struct store *s, uint32_t chunk, uint64_t gen, const uint8_t *hash)
{
	long i;
	int may_hold_data;

	if (put_check(s, chunk, gen, "put_zero") < 0)
		return -1;
	i = pending_find(s, chunk);
	if (i >= 0)
		may_hold_data = s->pending_state[i] != STORE_ZERO;
	else
		may_hold_data = store_state_of(s, chunk) != STORE_ZERO;
	/*
	 * A committed ZERO chunk stays zero, so its mark may stand until the
	 * commit moves it to the new generation; a PRESENT one is about to lose
	 * its bytes.
	 */
	if ((batch_withdraw(s, chunk) || store_state_of(s, chunk) == STORE_PRESENT) &&
	    mark_missing(s, chunk) < 0)
		return -1;
	if (may_hold_data) {
		memset(s->id[chunk], 0, STORE_ID_LEN);
		if (zero_range(s, chunk) < 0)
			return -1;
	}
	pending_add(s, chunk, gen, STORE_ZERO, hash);
	memcpy(s->id[chunk], hash, STORE_ID_LEN);
	return 0;
}

struct pending_ent {
	uint32_t chunk;
	uint8_t state;
	uint64_t gen;
	uint8_t id[STORE_ID_LEN];
};

static int pending_ent_cmp(const void *a, const void *b)
{
	const struct pending_ent *x = a, *y = b;

	return x->chunk < y->chunk ? -1 : x->chunk > y->chunk;
}

/* A commit in progress: the pending chunks taken by store_commit_begin. */
struct store_batch {
	uint32_t n;
	struct pending_ent *ent; /* sorted by chunk */
	uint8_t *recs;           /* the records to write, in ent order */
	uint8_t *ids;            /* their content ids, likewise */
	int data_durable;        /* the image sync succeeded */
	pthread_mutex_t lock;    /* guards fate: the worker writes, the loop withdraws */
	uint8_t *fate;           /* per entry: BATCH_TO_WRITE, BATCH_WRITTEN or BATCH_WITHDRAWN */
};

enum { BATCH_TO_WRITE, BATCH_WRITTEN, BATCH_WITHDRAWN };

/*
 * Chunk is about to change (put again, zeroed, made local, forgotten): take
 * it out of the commit in flight, if it is in it, so that the commit does not
 * mark it with what it held before. Returns 1 if the worker has written its
 * record already (the file may say PRESENT or ZERO: the caller must write a
 * new record, durably, before the bytes change), else 0.
 */
static int batch_withdraw(struct store *s, uint32_t chunk)
{
	struct store_batch *b = s->inflight;
	uint32_t lo = 0, hi;
	int written;

	if (b == NULL)
		return 0;
	hi = b->n;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (b->ent[mid].chunk < chunk)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == b->n || b->ent[lo].chunk != chunk)
		return 0;
	pthread_mutex_lock(&b->lock);
	written = b->fate[lo] == BATCH_WRITTEN;
	b->fate[lo] = BATCH_WITHDRAWN;
	pthread_mutex_unlock(&b->lock);
	return written;
}

struct store_batch *store_commit_begin(struct store *s)
{
	struct store_batch *b;
	uint32_t n = s->npending;

	if (n == 0)
		return NULL;
	if (s->inflight != NULL)
		fatal("store: a commit began while another is in flight");
	b = xcalloc(1, sizeof(*b));
	b->n = n;
	b->ent = xmalloc(n * sizeof(*b->ent));
	b->recs = xmalloc((size_t)n * STORE_REC_LEN);
	b->ids = xmalloc((size_t)n * STORE_ID_LEN);
	b->fate = xcalloc(n, 1);
	pthread_mutex_init(&b->lock, NULL);
	for (uint32_t i = 0; i < n; i++) {
		b->ent[i].chunk = s->pending[i];
		b->ent[i].state = s->pending_state[i];
		b->ent[i].gen = s->pending_gen[i];
		memcpy(b->ent[i].id, s->pending_id[i], STORE_ID_LEN);
	}
	pending_clear(s);
	/* Sorted, so that runs of adjacent records go out in one write. */
	qsort(b->ent, n, sizeof(*b->ent), pending_ent_cmp);
	for (uint32_t i = 0; i < n; i++) {
		store_put_le64(b->recs + (size_t)i * STORE_REC_LEN,
		               b->ent[i].gen << 8 | b->ent[i].state);
		memcpy(b->ids + (size_t)i * STORE_ID_LEN, b->ent[i].id, STORE_ID_LEN);
	}
	s->inflight = b;
	return b;
}

/*
 * Write one field of every entry of b that is not withdrawn, runs of
 * adjacent chunks in one write each: the field of entry i is len bytes at
 * buf + i * len, and goes to the file at off0 + chunk * len. With mark != 0
 * the entries written become BATCH_WRITTEN. Called with b->lock held. 0 or -1.
 */
static int batch_write_field(const struct store *s, struct store_batch *b, const uint8_t *buf,
                             size_t len, uint64_t off0, int mark)
{
	uint32_t i, j;

	for (i = 0; i < b->n; i = j) {
		if (b->fate[i] == BATCH_WITHDRAWN) {
			j = i + 1;
			continue;
		}
		for (j = i + 1; j < b->n && b->ent[j].chunk == b->ent[j - 1].chunk + 1 &&
		                b->fate[j] != BATCH_WITHDRAWN;
		     j++)
			;
		if (write_at(s->state_fd, buf + (size_t)i * len, (size_t)(j - i) * len,
		             off0 + (uint64_t)len * b->ent[i].chunk) < 0)
			return -1;
		if (mark)
			memset(b->fate + i, BATCH_WRITTEN, j - i);
	}
	return 0;
}

int store_commit_sync(const struct store *s, struct store_batch *b)
{
	int r;

	/* The correctness rule: data durable first, marks second. */
	if (fdatasync(s->img_fd) < 0) {
		log_error("store: syncing %s: %s; %u chunks stay missing", s->img_path,
		          strerror(errno), b->n);
		return -1;
	}
	b->data_durable = 1;
	/*
	 * The content ids are durable before the records that make them count:
	 * a crash between the two leaves a new id behind a MISSING record (the
	 * chunk was marked missing before its bytes changed), never an old id
	 * behind a PRESENT one.
	 */
	pthread_mutex_lock(&b->lock);
	r = batch_write_field(s, b, b->ids, STORE_ID_LEN, store_id_offset(s, 0), 0);
	pthread_mutex_unlock(&b->lock);
	if (r < 0 || fdatasync(s->state_fd) < 0) {
		log_error("store: writing content ids to %s: %s", s->state_path, strerror(errno));
		return -1;
	}
	/* Under the lock: a chunk is withdrawn either before its record is
	 * written (and it is not) or after (and the loop writes a new one). */
	pthread_mutex_lock(&b->lock);
	r = batch_write_field(s, b, b->recs, STORE_REC_LEN, STORE_HDR_LEN, 1);
	pthread_mutex_unlock(&b->lock);
	if (r < 0) {
		log_error("store: writing records to %s: %s", s->state_path, strerror(errno));
		return -1;
	}
	if (fdatasync(s->state_fd) < 0) {
		log_error("store: syncing %s: %s", s->state_path, strerror(errno));
		return -1;
	}
	return 0;
}

int store_sync_data(const struct store *s)
{
	if (fdatasync(s->img_fd) < 0) {
		log_error("store: syncing %s: %s", s->img_path, strerror(errno));
		return -1;
	}
	return 0;
}

int store_commit_end(struct store *s, struct store_batch *b, int sync_result)
{
	int ret = sync_result == 0 ? (int)b->n : -1;

	/* The data is durable: the mirror may say so even if the marks failed
	 * (not for a chunk that changed meanwhile: it is pending again). */
	if (b->data_durable) {
		for (uint32_t i = 0; i < b->n; i++) {
			uint32_t c = b->ent[i].chunk;

			if (b->fate[i] == BATCH_WITHDRAWN)
				continue;
			uint64_t rec = store_get_le64(b->recs + (size_t)i * STORE_REC_LEN);

			if (store_state_of(s, c) == STORE_MISSING)
				s->present_bytes += store_chunk_len(s, c);
			/* store_relabel may have moved it to a later generation meanwhile. */
			if (store_gen_of(s, c) > rec >> 8)
				rec = store_gen_of(s, c) << 8 | (rec & 0xff);
			s->rec[c] = rec;
		}
	}
	if (s->inflight == b)
		s->inflight = NULL;
	pthread_mutex_destroy(&b->lock);
	free(b->fate);
	free(b->ids);
	free(b->recs);
	free(b->ent);
	free(b);
	return ret;
}

int store_commit(struct store *s)
{
	struct store_batch *b = store_commit_begin(s);

	if (b == NULL)
		return 0;
	return store_commit_end(s, b, store_commit_sync(s, b));
}

int store_mark_local(struct store *s, uint32_t chunk)
{
	enum store_state st;
	uint64_t rec = STORE_LOCAL;
	int written;

	if (chunk >= s->chunk_count) {
		log_error("store: mark_local: chunk %u out of range (%u chunks)", chunk,
		          s->chunk_count);
		return -1;
	}
	st = store_state_of(s, chunk);
	if (st == STORE_LOCAL)
		return 0;
	/* In the commit in flight, its record may say PRESENT already: it is
	 * replaced, as below, before the VM's bytes change the chunk. */
	written = batch_withdraw(s, chunk);
	if (st == STORE_MISSING && !written) {
		/* A crash before the commit only loses an unflushed write. */
		pending_add(s, chunk, 0, STORE_LOCAL, NULL);
		memset(s->id[chunk], 0, STORE_ID_LEN);
		return 0;
	}
	/*
	 * PRESENT or ZERO: the record must say LOCAL before the VM's bytes
	 * change the chunk, or a crash could leave a chunk marked as the
	 * manifest's version holding other data.
	 */
	pending_remove(s, chunk);
	if (store_state_write_rec(s, chunk, rec, "local") < 0)
		return -1;
	if (st == STORE_MISSING)
		s->present_bytes += store_chunk_len(s, chunk);
	s->rec[chunk] = rec;
	memset(s->id[chunk], 0, STORE_ID_LEN);
	return 0;
}

int store_write_range(const struct store *s, uint64_t off, const void *data, size_t len)
{
	if (off > s->image_size || len > s->image_size - off) {
		log_error("store: write of %zu bytes at %llu is beyond the image", len,
		          (unsigned long long)off);
		return -1;
	}
	if (write_at(s->img_fd, data, len, off) < 0) {
		log_error("store: writing %zu bytes at %llu of %s: %s", len,
		          (unsigned long long)off, s->img_path, strerror(errno));
		return -1;
	}
	return 0;
}

int store_zero_range(const struct store *s, uint64_t off, uint64_t len, int punch)
{
	if (off > s->image_size || len > s->image_size - off) {
		log_error("store: zeroing %llu bytes at %llu is beyond the image",
		          (unsigned long long)len, (unsigned long long)off);
		return -1;
	}
	if (zero_at(s->img_fd, off, len, punch) < 0) {
		log_error("store: zeroing %llu bytes at %llu of %s: %s", (unsigned long long)len,
		          (unsigned long long)off, s->img_path, strerror(errno));
		return -1;
	}
	return 0;
}

int store_forget(struct store *s, uint32_t chunk)
{
	if (chunk >= s->chunk_count) {
		log_error("store: forget: chunk %u out of range (%u chunks)", chunk,
		          s->chunk_count);
		return -1;
	}
	if (store_state_of(s, chunk) == STORE_LOCAL) {
		log_error("store: forget: chunk %u holds the local VM's writes; keeping it", chunk);
		return -1;
	}
	/* A pending write of an outdated generation must not be marked later. */
	pending_remove(s, chunk);
	memset(s->id[chunk], 0, STORE_ID_LEN);
	if (!batch_withdraw(s, chunk) && store_state_of(s, chunk) == STORE_MISSING)
		return 0;
	return mark_missing(s, chunk);
}

int store_holds(const struct store *s, uint32_t chunk, const uint8_t hash[VCRYPTO_HASH_LEN])
{
	/* An all-zero id means "none"; a hash that begins with 16 zero bytes is
	 * never matched (it is only fetched again). */
	return chunk < s->chunk_count && !id_is_none(s->id[chunk]) &&
	       memcmp(s->id[chunk], hash, STORE_ID_LEN) == 0;
}

void store_relabel(struct store *s, uint32_t chunk, uint64_t gen)
{
	long i = pending_find(s, chunk);

	if (gen > STORE_GEN_MAX)
		return;
	s->rec[chunk] = gen << 8 | (s->rec[chunk] & 0xff);
	if (i >= 0)
		s->pending_gen[i] = gen;
}

int store_read(struct store *s, uint64_t offset, void *buf, size_t len)
{
	ssize_t n;

	if (offset > s->image_size || len > s->image_size - offset) {
		log_error("store: read of %zu bytes at %llu is beyond the image (%llu bytes)", len,
		          (unsigned long long)offset, (unsigned long long)s->image_size);
		return -1;
	}
	n = read_at(s->img_fd, buf, len, offset);
	if (n < 0) {
		log_error("store: reading %s at %llu: %s", s->img_path, (unsigned long long)offset,
		          strerror(errno));
		return -1;
	}
	if ((size_t)n != len) {
		log_error("store: %s ends at %llu, before its size %llu", s->img_path,
		          (unsigned long long)(offset + (uint64_t)n),
		          (unsigned long long)s->image_size);
		return -1;
	}
	return 0;
}

void store_counts(const struct store *s, uint32_t counts[4])
{
	memset(counts, 0, 4 * sizeof(counts[0]));
	for (uint32_t i = 0; i < s->chunk_count; i++)
		counts[store_state_of(s, i) & 3]++;
}

void store_close(struct store *s)
{
	if (s->img_fd >= 0 && s->npending > 0 && store_commit(s) < 0)
		log_warn("store: closing %s with uncommitted chunks; they will be fetched again",
		         s->img_path);
	if (s->state_fd >= 0 && s->root_dirty && fdatasync(s->state_fd) < 0)
		log_warn("store: syncing %s: %s", s->state_path, strerror(errno));
	store_free(s);
}
