/* SPDX-License-Identifier: ISC */
/*
 * seedgen: the seed's durable generation record (format and rules in
 * seedgen.h and PROTOCOL.md §9.4).
 */
#include "seedgen.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEEDGEN_MAGIC   "P2PVSGN1"
#define SEEDGEN_VERSION 1

#define OFF_MAGIC     0
#define OFF_VERSION   8
#define OFF_RESERVED  12 /* 4 bytes */
#define OFF_VOLUME_ID 16
#define OFF_GEN       32
#define OFF_ROOT_GEN  40
#define OFF_ROOT_HASH 48
#define OFF_RESERVED2 80 /* 16 bytes */

/* Generations fit 56 bits everywhere (the destination's state file, PROTOCOL.md §13). */
#define SEEDGEN_GEN_MAX ((UINT64_C(1) << 56) - 1)

struct seedgen {
	int fd;
	char *path;               /* owned */
	struct seedgen_info info; /* as durable in the file */
	uint64_t step;
};

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void seedgen_encode(uint8_t buf[SEEDGEN_LEN], const struct seedgen_info *info)
{
	memset(buf, 0, SEEDGEN_LEN);
	memcpy(buf + OFF_MAGIC, SEEDGEN_MAGIC, 8);
	put_le(buf + OFF_VERSION, SEEDGEN_VERSION, 4);
	memcpy(buf + OFF_VOLUME_ID, info->volume_id, MANIFEST_ID_LEN);
	put_le(buf + OFF_GEN, info->reserved, 8);
	put_le(buf + OFF_ROOT_GEN, info->root_gen, 8);
	memcpy(buf + OFF_ROOT_HASH, info->root_hash, VCRYPTO_HASH_LEN);
}

int seedgen_decode(const uint8_t *buf, size_t len, struct seedgen_info *info, const char **why)
{
	static const uint8_t zero[4 + 16];

	if (len != SEEDGEN_LEN) {
		*why = len < SEEDGEN_LEN ? "truncated" : "trailing bytes";
		return -1;
	}
	if (memcmp(buf + OFF_MAGIC, SEEDGEN_MAGIC, 8) != 0) {
		*why = "not a p2pvbd generation record (bad magic)";
		return -1;
	}
	if (get_le(buf + OFF_VERSION, 4) != SEEDGEN_VERSION) {
		*why = "unknown version";
		return -1;
	}
	if (memcmp(buf + OFF_RESERVED, zero, 4) != 0 ||
	    memcmp(buf + OFF_RESERVED2, zero, SEEDGEN_LEN - OFF_RESERVED2) != 0) {
		*why = "reserved bytes are not zero";
		return -1;
	}
	memcpy(info->volume_id, buf + OFF_VOLUME_ID, MANIFEST_ID_LEN);
	info->reserved = get_le(buf + OFF_GEN, 8);
	info->root_gen = get_le(buf + OFF_ROOT_GEN, 8);
	memcpy(info->root_hash, buf + OFF_ROOT_HASH, VCRYPTO_HASH_LEN);
	if (info->reserved > SEEDGEN_GEN_MAX || info->root_gen > info->reserved) {
		*why = "generation out of range";
		return -1;
	}
	return 0;
}

/* Write the whole record g->info, durably: temp file, sync, rename, sync the directory. */
static int record_write(struct seedgen *g)
{
	char *tmp = xasprintf("%s.tmp.%d", g->path, (int)getpid());
	uint8_t buf[SEEDGEN_LEN];
	int fd, ret = -1;

	seedgen_encode(buf, &g->info);
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		log_error("cannot create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_at(fd, buf, sizeof(buf), 0) < 0 || fsync(fd) < 0) {
		log_error("cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (rename(tmp, g->path) < 0) {
		log_error("cannot rename %s to %s: %s", tmp, g->path, strerror(errno));
		goto fail;
	}
	if (fsync_dir_of(g->path) < 0)
		goto fail_renamed;
	if (g->fd >= 0)
		close(g->fd);
	g->fd = fd;
	ret = 0;
	goto out;
fail:
	unlink(tmp);
fail_renamed:
	close(fd);
out:
	free(tmp);
	return ret;
}

int seedgen_open(const char *path, const uint8_t volume_id[MANIFEST_ID_LEN], uint64_t step,
                 struct seedgen **out, int *known, struct seedgen_info *info)
{
	struct seedgen *g = xcalloc(1, sizeof(*g));
	uint8_t buf[SEEDGEN_LEN + 1];
	const char *why;
	ssize_t n;

	g->path = xstrdup(path);
	g->step = step;
	*out = NULL;
	*known = 0;
	g->fd = open(path, O_RDWR | O_CLOEXEC);
	if (g->fd < 0 && errno != ENOENT) {
		log_error("cannot open the generation record %s: %s", path, strerror(errno));
		goto fail;
	}
	if (g->fd >= 0) {
		n = read_at(g->fd, buf, sizeof(buf), 0);
		if (n < 0) {
			log_error("cannot read %s: %s", path, strerror(errno));
			goto fail;
		}
		if (seedgen_decode(buf, (size_t)n, &g->info, &why) != 0) {
			log_error("%s: %s; it is not replaced: remove it only if no destination "
			          "holds a generation of its volume",
			          path, why);
			goto fail;
		}
		*known = memcmp(g->info.volume_id, volume_id, MANIFEST_ID_LEN) == 0;
	}
	if (!*known) {
		/* New here (another volume's record is replaced: that one is not seeded now). */
		memset(&g->info, 0, sizeof(g->info));
		memcpy(g->info.volume_id, volume_id, MANIFEST_ID_LEN);
		g->info.reserved = step;
		if (record_write(g) != 0)
			goto fail;
	} else if (g->info.reserved >= SEEDGEN_GEN_MAX - step - 1) {
		log_error("%s: generation %llu leaves no room to go on", path,
		          (unsigned long long)g->info.reserved);
		goto fail;
	}
	*info = g->info;
	*out = g;
	return 0;
fail:
	seedgen_close(g);
	return -1;
}

int seedgen_reserve(struct seedgen *g, uint64_t gen)
{
	uint8_t buf[8];
	uint64_t r;

	if (gen <= g->info.reserved)
		return 0;
	r = gen + g->step;
	if (r > SEEDGEN_GEN_MAX) {
		log_error("generation %llu is beyond the largest one (2^56 - 1)",
		          (unsigned long long)gen);
		return -1;
	}
	put_le(buf, r, 8);
	/* One aligned 8-byte write, synced before the generation is published. */
	if (write_at(g->fd, buf, sizeof(buf), OFF_GEN) < 0 || fdatasync(g->fd) < 0) {
		log_error("cannot record generation %llu in %s: %s", (unsigned long long)r, g->path,
		          strerror(errno));
		return -1;
	}
	g->info.reserved = r;
	return 0;
}

int seedgen_set_root(struct seedgen *g, uint64_t gen, const uint8_t hash[VCRYPTO_HASH_LEN])
{
	if (gen > g->info.reserved && seedgen_reserve(g, gen) != 0)
		return -1;
	g->info.root_gen = gen;
	memcpy(g->info.root_hash, hash, VCRYPTO_HASH_LEN);
	return record_write(g);
}

void seedgen_close(struct seedgen *g)
{
	if (g == NULL)
		return;
	if (g->fd >= 0)
		close(g->fd);
	free(g->path);
	free(g);
}
