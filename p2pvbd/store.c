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

#define STORE_VERSION   1
#define STORE_REC_LEN   8
#define STORE_STATE_MAX STORE_LOCAL
/* The generation shares a u64 with the 8-bit state. */
#define STORE_GEN_MAX ((UINT64_C(1) << 56) - 1)
/* First allocation of the pending list; it doubles from there. */
#define STORE_PENDING_INIT 64

/* Header field offsets (see the format comment in store.h). */
#define HDR_OFF_MAGIC      0
#define HDR_OFF_VERSION    8
#define HDR_OFF_CHUNK_SIZE 12
#define HDR_OFF_IMAGE_SIZE 16
#define HDR_OFF_VOLUME_ID  24
#define HDR_OFF_COUNT      40
#define HDR_OFF_RESERVED   44

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

/* Make the directory entries next to path (a new file, a rename) durable. */
static int fsync_dir_of(const char *path)
{
	char *copy = xstrdup(path);
	const char *dir = dirname(copy);
	int fd, ret = -1;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		log_error("store: opening directory %s: %s", dir, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		log_error("store: syncing directory %s: %s", dir, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(copy);
	return ret;
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
	free(s->pending);
	free(s->pending_state);
	free(s->pending_gen);
	memset(s, 0, sizeof(*s));
	s->img_fd = -1;
	s->state_fd = -1;
}

/* Check the header and records of an open state file against s, and load the records. */
static int state_load(struct store *s)
{
	uint8_t hdr[STORE_HDR_LEN];
	char want_hex[2 * 16 + 1], have_hex[2 * 16 + 1];
	uint64_t want_len = STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * s->chunk_count;
	uint32_t v32;
	uint64_t v64;
	struct stat st;
	ssize_t n;

	if (fstat(s->state_fd, &st) < 0) {
		log_error("store: %s: %s", s->state_path, strerror(errno));
		return -1;
	}
	if (st.st_size < STORE_HDR_LEN) {
		log_error("store: state file %s is truncated (%lld bytes, shorter than its header)",
		          s->state_path, (long long)st.st_size);
		return -1;
	}
	n = read_at(s->state_fd, hdr, sizeof(hdr), 0);
	if (n != (ssize_t)sizeof(hdr)) {
		log_error("store: reading %s: %s", s->state_path,
		          n < 0 ? strerror(errno) : "file shrank while reading");
		return -1;
	}
	if (memcmp(hdr + HDR_OFF_MAGIC, STORE_STATE_MAGIC, 8) != 0) {
		log_error("store: %s is not a p2pvbd state file (bad magic)", s->state_path);
		return -1;
	}
	v32 = get_le32(hdr + HDR_OFF_VERSION);
	if (v32 != STORE_VERSION) {
		log_error("store: state file %s has version %u, this program knows only %u",
		          s->state_path, v32, STORE_VERSION);
		return -1;
	}
	if (memcmp(hdr + HDR_OFF_VOLUME_ID, s->volume_id, MANIFEST_ID_LEN) != 0) {
		hex_encode(hdr + HDR_OFF_VOLUME_ID, MANIFEST_ID_LEN, have_hex);
		hex_encode(s->volume_id, MANIFEST_ID_LEN, want_hex);
		log_error("store: state file %s belongs to another volume (%s, not %s); "
		          "remove it and %s to start over",
		          s->state_path, have_hex, want_hex, s->img_path);
		return -1;
	}
	v32 = get_le32(hdr + HDR_OFF_CHUNK_SIZE);
	if (v32 != s->chunk_size) {
		log_error("store: state file %s: chunk size differs (file %u, volume %u)",
		          s->state_path, v32, s->chunk_size);
		return -1;
	}
	v64 = get_le64(hdr + HDR_OFF_IMAGE_SIZE);
	if (v64 != s->image_size) {
		log_error("store: state file %s: image size differs (file %llu, volume %llu)",
		          s->state_path, (unsigned long long)v64,
		          (unsigned long long)s->image_size);
		return -1;
	}
	v32 = get_le32(hdr + HDR_OFF_COUNT);
	if (v32 != s->chunk_count) {
		log_error("store: state file %s: chunk count %u does not match its sizes (%u)",
		          s->state_path, v32, s->chunk_count);
		return -1;
	}
	for (size_t i = HDR_OFF_RESERVED; i < STORE_HDR_LEN; i++) {
		if (hdr[i] != 0) {
			log_error("store: state file %s: reserved header byte %zu is not zero",
			          s->state_path, i);
			return -1;
		}
	}
	if ((uint64_t)st.st_size != want_len) {
		log_error("store: state file %s has %lld bytes, expected %llu (%s)", s->state_path,
		          (long long)st.st_size, (unsigned long long)want_len,
		          (uint64_t)st.st_size < want_len ? "truncated" : "trailing bytes");
		return -1;
	}

	s->rec = xcalloc(s->chunk_count, sizeof(*s->rec));
	n = read_at(s->state_fd, s->rec, (size_t)s->chunk_count * STORE_REC_LEN, STORE_HDR_LEN);
	if (n != (ssize_t)((size_t)s->chunk_count * STORE_REC_LEN)) {
		log_error("store: reading records of %s: %s", s->state_path,
		          n < 0 ? strerror(errno) : "file shrank while reading");
		return -1;
	}
	for (uint32_t i = 0; i < s->chunk_count; i++) {
		s->rec[i] = le64toh(s->rec[i]);
		if ((s->rec[i] & 0xff) > STORE_STATE_MAX) {
			log_error("store: state file %s: record of chunk %u has unknown state %u",
			          s->state_path, i, (unsigned)(s->rec[i] & 0xff));
			return -1;
		}
	}
	return 0;
}

/*
 * Create the state file with every chunk MISSING at generation 0. It is
 * written under a temporary name and renamed, so that a crash leaves either
 * no state file or a complete one.
 */
static int state_create(struct store *s)
{
	uint8_t hdr[STORE_HDR_LEN] = {0};
	char *tmp = xasprintf("%s.tmp", s->state_path);
	uint64_t len = STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * s->chunk_count;
	int fd, ret = -1;

	memcpy(hdr + HDR_OFF_MAGIC, STORE_STATE_MAGIC, 8);
	put_le32(hdr + HDR_OFF_VERSION, STORE_VERSION);
	put_le32(hdr + HDR_OFF_CHUNK_SIZE, s->chunk_size);
	put_le64(hdr + HDR_OFF_IMAGE_SIZE, s->image_size);
	memcpy(hdr + HDR_OFF_VOLUME_ID, s->volume_id, MANIFEST_ID_LEN);
	put_le32(hdr + HDR_OFF_COUNT, s->chunk_count);

	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("store: creating %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_at(fd, hdr, sizeof(hdr), 0) < 0) {
		log_error("store: writing %s: %s", tmp, strerror(errno));
		goto fail;
	}
	/* All-zero records mean MISSING at generation 0, so a sparse extension is enough. */
	if (ftruncate(fd, (off_t)len) < 0) {
		log_error("store: sizing %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (fsync(fd) < 0) {
		log_error("store: syncing %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, s->state_path) < 0) {
		log_error("store: renaming %s to %s: %s", tmp, s->state_path, strerror(errno));
		goto fail;
	}
	if (fsync_dir_of(s->state_path) < 0) {
		/* The file is complete; only its name might not survive a crash. */
		close(fd);
		goto out;
	}
	s->state_fd = fd;
	s->rec = xcalloc(s->chunk_count, sizeof(*s->rec));
	ret = 0;
	goto out;
fail:
	close(fd);
	unlink(tmp);
out:
	free(tmp);
	return ret;
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
		if (state_load(s) < 0)
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
		if (image_prepare(s, &st, cur_size) < 0 || state_create(s) < 0)
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

static void pending_add(struct store *s, uint32_t chunk, uint64_t gen, uint8_t state)
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
		}
		i = (long)s->npending++;
		s->pending[i] = chunk;
	} else {
		s->pending_bytes -= pending_data_bytes(s, chunk, s->pending_state[i]);
	}
	s->pending_state[i] = state;
	s->pending_gen[i] = gen;
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
	uint8_t buf[STORE_REC_LEN];

	put_le64(buf, rec);
	if (write_at(s->state_fd, buf, sizeof(buf),
	             STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * chunk) < 0 ||
	    fdatasync(s->state_fd) < 0) {
		log_error("store: marking chunk %u missing in %s: %s", chunk, s->state_path,
		          strerror(errno));
		return -1;
	}
	if (store_state_of(s, chunk) != STORE_MISSING)
		s->present_bytes -= store_chunk_len(s, chunk);
	s->rec[chunk] = rec;
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

void store_put_end(struct store *s, uint32_t chunk, uint64_t gen)
{
	pending_add(s, chunk, gen, STORE_PRESENT);
	/* The state stays MISSING until the commit; the generation of the data
	 * now in the image is known at once (store_gen_of, for serving it). */
	s->rec[chunk] = gen << 8 | (s->rec[chunk] & 0xff);
}

int store_put(struct store *s, uint32_t chunk, uint64_t gen, const void *data, size_t len)
{
	if (store_put_begin(s, chunk, gen, len) < 0 || store_write(s, chunk, data, len) < 0)
		return -1;
	store_put_end(s, chunk, gen);
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

int store_put_zero(struct store *s, uint32_t chunk, uint64_t gen)
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
	if (may_hold_data && zero_range(s, chunk) < 0)
		return -1;
	pending_add(s, chunk, gen, STORE_ZERO);
	return 0;
}

struct pending_ent {
	uint32_t chunk;
	uint8_t state;
	uint64_t gen;
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
	b->fate = xcalloc(n, 1);
	pthread_mutex_init(&b->lock, NULL);
	for (uint32_t i = 0; i < n; i++) {
		b->ent[i].chunk = s->pending[i];
		b->ent[i].state = s->pending_state[i];
		b->ent[i].gen = s->pending_gen[i];
	}
	pending_clear(s);
	/* Sorted, so that runs of adjacent records go out in one write. */
	qsort(b->ent, n, sizeof(*b->ent), pending_ent_cmp);
	for (uint32_t i = 0; i < n; i++)
		put_le64(b->recs + (size_t)i * STORE_REC_LEN, b->ent[i].gen << 8 | b->ent[i].state);
	s->inflight = b;
	return b;
}

int store_commit_sync(const struct store *s, struct store_batch *b)
{
	uint32_t i, j;

	/* The correctness rule: data durable first, marks second. */
	if (fdatasync(s->img_fd) < 0) {
		log_error("store: syncing %s: %s; %u chunks stay missing", s->img_path,
		          strerror(errno), b->n);
		return -1;
	}
	b->data_durable = 1;
	/* Under the lock: a chunk is withdrawn either before its record is
	 * written (and it is not) or after (and the loop writes a new one). */
	pthread_mutex_lock(&b->lock);
	for (i = 0; i < b->n; i = j) {
		if (b->fate[i] == BATCH_WITHDRAWN) {
			j = i + 1;
			continue;
		}
		for (j = i + 1; j < b->n && b->ent[j].chunk == b->ent[j - 1].chunk + 1 &&
		                b->fate[j] != BATCH_WITHDRAWN;
		     j++)
			;
		if (write_at(s->state_fd, b->recs + (size_t)i * STORE_REC_LEN,
		             (size_t)(j - i) * STORE_REC_LEN,
		             STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * b->ent[i].chunk) < 0) {
			pthread_mutex_unlock(&b->lock);
			log_error("store: writing records to %s: %s", s->state_path,
			          strerror(errno));
			return -1;
		}
		memset(b->fate + i, BATCH_WRITTEN, j - i);
	}
	pthread_mutex_unlock(&b->lock);
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
			if (store_state_of(s, c) == STORE_MISSING)
				s->present_bytes += store_chunk_len(s, c);
			s->rec[c] = get_le64(b->recs + (size_t)i * STORE_REC_LEN);
		}
	}
	if (s->inflight == b)
		s->inflight = NULL;
	pthread_mutex_destroy(&b->lock);
	free(b->fate);
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
	uint8_t buf[STORE_REC_LEN];
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
		pending_add(s, chunk, 0, STORE_LOCAL);
		return 0;
	}
	/*
	 * PRESENT or ZERO: the record must say LOCAL before the VM's bytes
	 * change the chunk, or a crash could leave a chunk marked as the
	 * manifest's version holding other data.
	 */
	pending_remove(s, chunk);
	put_le64(buf, rec);
	if (write_at(s->state_fd, buf, sizeof(buf),
	             STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * chunk) < 0 ||
	    fdatasync(s->state_fd) < 0) {
		log_error("store: marking chunk %u local in %s: %s", chunk, s->state_path,
		          strerror(errno));
		return -1;
	}
	if (st == STORE_MISSING)
		s->present_bytes += store_chunk_len(s, chunk);
	s->rec[chunk] = rec;
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
	if (!batch_withdraw(s, chunk) && store_state_of(s, chunk) == STORE_MISSING)
		return 0;
	return mark_missing(s, chunk);
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
	store_free(s);
}
