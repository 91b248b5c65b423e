/* SPDX-License-Identifier: ISC */
/*
 * store_file: the format of the state file (PROTOCOL.md §12): its header,
 * strict validation on open, creation, one record written durably, and the
 * newest root generation kept in the header. store.c decides what goes in.
 */
#include "store_int.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_VERSION 2

/* Header field offsets (see the format comment in store.h). */
#define HDR_OFF_MAGIC      0
#define HDR_OFF_VERSION    8
#define HDR_OFF_CHUNK_SIZE 12
#define HDR_OFF_IMAGE_SIZE 16
#define HDR_OFF_VOLUME_ID  24
#define HDR_OFF_COUNT      40
#define HDR_OFF_RESERVED   44 /* 4 bytes */
#define HDR_OFF_ROOT_GEN   48
#define HDR_OFF_RESERVED2  56 /* 8 bytes */

uint64_t store_id_offset(const struct store *s, uint32_t chunk)
{
	return STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * s->chunk_count +
	       (uint64_t)STORE_ID_LEN * chunk;
}

static uint64_t state_file_len(uint32_t chunk_count)
{
	return STORE_HDR_LEN + (uint64_t)(STORE_REC_LEN + STORE_ID_LEN) * chunk_count;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

int store_state_load(struct store *s)
{
	uint8_t hdr[STORE_HDR_LEN];
	char want_hex[2 * 16 + 1], have_hex[2 * 16 + 1];
	uint64_t want_len = state_file_len(s->chunk_count);
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
	if (v32 == 1) {
		/* Version 1 trusted a chunk by its generation alone (DESIGN rule 7). */
		log_error("store: state file %s was made by an older p2pvbd (format 1, without "
		          "content ids); remove it, and %s or use --force, to fetch again",
		          s->state_path, s->img_path);
		return -1;
	}
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
	v64 = store_get_le64(hdr + HDR_OFF_IMAGE_SIZE);
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
		if (i >= HDR_OFF_ROOT_GEN && i < HDR_OFF_RESERVED2)
			continue;
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

	s->root_gen = store_get_le64(hdr + HDR_OFF_ROOT_GEN);
	s->rec = xcalloc(s->chunk_count, sizeof(*s->rec));
	s->id = xcalloc(s->chunk_count, sizeof(*s->id));
	n = read_at(s->state_fd, s->rec, (size_t)s->chunk_count * STORE_REC_LEN, STORE_HDR_LEN);
	if (n == (ssize_t)((size_t)s->chunk_count * STORE_REC_LEN)) {
		n = read_at(s->state_fd, s->id, (size_t)s->chunk_count * STORE_ID_LEN,
		            store_id_offset(s, 0));
		if (n == (ssize_t)((size_t)s->chunk_count * STORE_ID_LEN))
			n = 0;
	}
	if (n != 0) {
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
		/* An id vouches only for bytes a PRESENT or ZERO record stands behind. */
		if (store_state_of(s, i) != STORE_PRESENT && store_state_of(s, i) != STORE_ZERO)
			memset(s->id[i], 0, STORE_ID_LEN);
	}
	return 0;
}

/*
 * Create the state file with every chunk MISSING at generation 0. It is
 * written under a temporary name and renamed, so that a crash leaves either
 * no state file or a complete one.
 */
int store_state_create(struct store *s)
{
	uint8_t hdr[STORE_HDR_LEN] = {0};
	char *tmp = xasprintf("%s.tmp", s->state_path);
	uint64_t len = state_file_len(s->chunk_count);
	int fd, ret = -1;

	memcpy(hdr + HDR_OFF_MAGIC, STORE_STATE_MAGIC, 8);
	put_le32(hdr + HDR_OFF_VERSION, STORE_VERSION);
	put_le32(hdr + HDR_OFF_CHUNK_SIZE, s->chunk_size);
	store_put_le64(hdr + HDR_OFF_IMAGE_SIZE, s->image_size);
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
	/* All-zero records mean MISSING at generation 0 (and no content id), so a
	 * sparse extension is enough. */
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
	s->id = xcalloc(s->chunk_count, sizeof(*s->id));
	ret = 0;
	goto out;
fail:
	close(fd);
	unlink(tmp);
out:
	free(tmp);
	return ret;
}

int store_state_write_rec(const struct store *s, uint32_t chunk, uint64_t rec, const char *what)
{
	uint8_t buf[STORE_REC_LEN];

	store_put_le64(buf, rec);
	if (write_at(s->state_fd, buf, sizeof(buf),
	             STORE_HDR_LEN + (uint64_t)STORE_REC_LEN * chunk) < 0 ||
	    fdatasync(s->state_fd) < 0) {
		log_error("store: marking chunk %u %s in %s: %s", chunk, what, s->state_path,
		          strerror(errno));
		return -1;
	}
	return 0;
}

uint64_t store_root_gen(const struct store *s)
{
	return s->root_gen;
}

int store_note_root(struct store *s, uint64_t gen)
{
	uint8_t buf[8];

	if (gen <= s->root_gen)
		return 0;
	s->root_gen = gen;
	store_put_le64(buf, gen);
	/* Made durable by the next commit's sync of the state file, or at close. */
	s->root_dirty = 1;
	if (write_at(s->state_fd, buf, sizeof(buf), HDR_OFF_ROOT_GEN) < 0) {
		log_error("store: recording generation %llu in %s: %s", (unsigned long long)gen,
		          s->state_path, strerror(errno));
		return -1;
	}
	return 0;
}

int store_peek_root_gen(const char *sidecar, const uint8_t volume_id[MANIFEST_ID_LEN],
                        uint64_t *gen)
{
	char *path = xasprintf("%s%s", sidecar, STORE_STATE_SUFFIX);
	uint8_t hdr[STORE_HDR_LEN];
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;

	*gen = 0;
	if (fd < 0) {
		if (errno != ENOENT) {
			log_error("store: opening %s: %s", path, strerror(errno));
			ret = -1;
		}
		free(path);
		return ret;
	}
	/* A file that is not ours, or of another volume, is judged by store_open. */
	if (read_at(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr) &&
	    memcmp(hdr + HDR_OFF_MAGIC, STORE_STATE_MAGIC, 8) == 0 &&
	    get_le32(hdr + HDR_OFF_VERSION) == STORE_VERSION &&
	    memcmp(hdr + HDR_OFF_VOLUME_ID, volume_id, MANIFEST_ID_LEN) == 0)
		*gen = store_get_le64(hdr + HDR_OFF_ROOT_GEN);
	close(fd);
	free(path);
	return ret;
}
