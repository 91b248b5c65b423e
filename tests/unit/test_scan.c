/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of scan: multi-threaded hashing must equal a plain
 * single-threaded reference, flag zero chunks, report progress to the end,
 * and fail on short or unreadable images.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scan.h"
#include "vcrypto.h"
#include "tdir.h"

#define SCAN_CS (64u * 1024u)

static char sc_dir[64];
static char sc_img[128];

static void sc_setup(void)
{
	cr_assert_eq(vcrypto_init(), 0);
	snprintf(sc_dir, sizeof(sc_dir), "%s", tdir_make("scan"));
	snprintf(sc_img, sizeof(sc_img), "%s/disk.img", sc_dir);
}

static void sc_teardown(void)
{
	tdir_remove();
}

TestSuite(scan, .init = sc_setup, .fini = sc_teardown);

static void sc_fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 32);
	}
}

/*
 * Write an image of `size` bytes in chunks of SCAN_CS; chunk i is zero if
 * is_zero(i), else random (with one chunk that is zero except its last byte,
 * to catch a zero test that stops early).
 */
static void make_image(uint64_t size, int (*is_zero)(uint32_t))
{
	uint8_t *buf = malloc(SCAN_CS);
	int fd = open(sc_img, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	cr_assert_not_null(buf);
	cr_assert_geq(fd, 0);
	for (uint64_t off = 0, i = 0; off < size; off += SCAN_CS, i++) {
		size_t len = size - off < SCAN_CS ? (size_t)(size - off) : SCAN_CS;

		if (is_zero((uint32_t)i)) {
			memset(buf, 0, len);
		} else if (i == 1) {
			memset(buf, 0, len);
			buf[len - 1] = 1;
		} else {
			sc_fill_random(buf, len, i + 100);
		}
		cr_assert_eq(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	}
	close(fd);
	free(buf);
}

static int zero_every_third(uint32_t i)
{
	return i % 3 == 0;
}

static int zero_every_third_but_last(uint32_t i)
{
	return i % 3 == 0 && i != 12;
}

/* Hash each chunk of the image in order, the obvious way. */
static struct manifest_entry *reference(uint64_t size, uint32_t count)
{
	struct manifest_entry *ref = calloc(count, sizeof(*ref));
	uint8_t *buf = malloc(SCAN_CS);
	int fd = open(sc_img, O_RDONLY);

	cr_assert_not_null(ref);
	cr_assert_geq(fd, 0);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t off = (uint64_t)i * SCAN_CS;
		size_t len = size - off < SCAN_CS ? (size_t)(size - off) : SCAN_CS;
		int zero = 1;

		cr_assert_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
		for (size_t j = 0; j < len; j++)
			zero &= buf[j] == 0;
		ref[i].gen = 42;
		ref[i].flags = zero ? MANIFEST_F_ZERO : 0;
		vcrypto_hash(ref[i].hash, buf, len);
	}
	close(fd);
	free(buf);
	return ref;
}

struct progress_log {
	int calls;
	uint64_t last_done, last_total;
	int went_back;
};

static void log_progress(uint64_t done, uint64_t total, void *arg)
{
	struct progress_log *p = arg;

	if (p->calls > 0 && done < p->last_done)
		p->went_back = 1;
	p->calls++;
	p->last_done = done;
	p->last_total = total;
}

static void check_scan(uint64_t size, int (*is_zero)(uint32_t), uint32_t want_zero_count)
{
	static const int threads[] = {1, 2, 7, 0, 40};
	uint32_t count = (uint32_t)((size + SCAN_CS - 1) / SCAN_CS);
	struct manifest_entry *ref, *got = calloc(count, sizeof(*got));
	uint32_t zeros = 0;

	cr_assert_not_null(got);
	make_image(size, is_zero);
	ref = reference(size, count);
	for (uint32_t i = 0; i < count; i++)
		zeros += ref[i].flags == MANIFEST_F_ZERO;
	cr_assert_eq(zeros, want_zero_count, "test image is not what the test expects");

	for (size_t t = 0; t < sizeof(threads) / sizeof(threads[0]); t++) {
		struct progress_log pl = {0};
		int fd = open(sc_img, O_RDONLY);

		cr_assert_geq(fd, 0);
		memset(got, 0xa5, count * sizeof(*got));
		cr_assert_eq(scan_image(fd, size, SCAN_CS, 42, threads[t], got, log_progress, &pl),
		             0);
		close(fd);
		for (uint32_t i = 0; i < count; i++) {
			cr_assert_eq(got[i].gen, 42, "threads %d chunk %u", threads[t], i);
			cr_assert_eq(got[i].flags, ref[i].flags, "threads %d chunk %u", threads[t],
			             i);
			cr_assert_arr_eq(got[i].hash, ref[i].hash, VCRYPTO_HASH_LEN,
			                 "threads %d chunk %u", threads[t], i);
		}
		cr_assert_geq(pl.calls, 1);
		cr_assert_eq(pl.last_done, size);
		cr_assert_eq(pl.last_total, size);
		cr_assert_eq(pl.went_back, 0);
	}
	free(ref);
	free(got);
}

/* 13 chunks, the last one short and zero: both zero hash lengths are used. */
Test(scan, matches_reference_last_zero)
{
	check_scan(12 * (uint64_t)SCAN_CS + 777, zero_every_third, 5);
}

/* The last chunk short and random. */
Test(scan, matches_reference_last_random)
{
	check_scan(12 * (uint64_t)SCAN_CS + 777, zero_every_third_but_last, 4);
}

/* Whole chunks only; more chunks than threads by far. */
Test(scan, matches_reference_whole_chunks)
{
	check_scan(64 * (uint64_t)SCAN_CS, zero_every_third, 22);
}

Test(scan, short_file_fails)
{
	struct manifest_entry got[14];
	struct progress_log pl = {0};
	int fd;

	make_image(12 * (uint64_t)SCAN_CS + 777, zero_every_third);
	fd = open(sc_img, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(
	    scan_image(fd, 13 * (uint64_t)SCAN_CS + 1, SCAN_CS, 1, 3, got, log_progress, &pl), -1);
	/* One byte short, inside the last chunk. */
	cr_assert_eq(scan_image(fd, 12 * (uint64_t)SCAN_CS + 778, SCAN_CS, 1, 2, got, NULL, NULL),
	             -1);
	close(fd);
	cr_assert(pl.calls == 0 || pl.last_done < pl.last_total);
}

Test(scan, read_error_fails)
{
	struct manifest_entry got[4];
	int fd;

	make_image(4 * (uint64_t)SCAN_CS, zero_every_third);
	fd = open(sc_img, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(scan_image(fd, 4 * (uint64_t)SCAN_CS, SCAN_CS, 1, 2, got, NULL, NULL), -1);
	close(fd);
}

Test(scan, empty_and_bad_arguments)
{
	struct manifest_entry got[1];
	struct progress_log pl = {0};

	cr_assert_eq(scan_image(0, 0, SCAN_CS, 1, 2, got, log_progress, &pl), 0);
	cr_assert_eq(pl.calls, 1);
	cr_assert_eq(pl.last_done, 0);
	cr_assert_eq(pl.last_total, 0);
	cr_assert_eq(scan_image(0, 10, 0, 1, 2, got, NULL, NULL), -1);
}

Test(scan, is_zero_every_length_and_position)
{
	uint8_t buf[8 + 100 + 8];

	/* Every alignment, so word-at-a-time code cannot rely on aligned input. */
	for (size_t align = 0; align < 8; align++) {
		uint8_t *p = buf + align;

		for (size_t len = 0; len <= 100; len++) {
			memset(buf, 0, sizeof(buf));
			/* Bytes just outside the range must not count. */
			if (align > 0)
				p[-1] = 0xff;
			p[len] = 0xff;
			cr_assert_eq(scan_is_zero(p, len), 1, "align %zu len %zu", align, len);
			for (size_t pos = 0; pos < len; pos++) {
				p[pos] = 0x80;
				cr_assert_eq(scan_is_zero(p, len), 0, "align %zu len %zu pos %zu",
				             align, len, pos);
				p[pos] = 0;
			}
		}
	}
}

Test(scan, is_zero_large)
{
	size_t len = 4 * 1024 * 1024;
	uint8_t *p = calloc(1, len);

	cr_assert_not_null(p);
	cr_assert_eq(scan_is_zero(p, len), 1);
	p[len - 1] = 1;
	cr_assert_eq(scan_is_zero(p, len), 0);
	p[len - 1] = 0;
	p[len / 2 + 3] = 4;
	cr_assert_eq(scan_is_zero(p, len), 0);
	free(p);
}
