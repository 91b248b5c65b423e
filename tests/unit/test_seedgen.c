/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of seedgen, the seed's durable generation record: a new volume
 * starts at 0, a restart goes on above every generation reserved before,
 * reservations are durable before they return, another volume's record is
 * replaced, and a malformed record is refused and left as it was.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seedgen.h"
#include "tdir.h"

static char sg_path[128];
static const uint8_t vol_a[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t vol_b[16] = {9, 9, 9};

static void sg_setup(void)
{
	snprintf(sg_path, sizeof(sg_path), "%s/img%s", tdir_make("seedgen"), SEEDGEN_SUFFIX);
}

static void sg_teardown(void)
{
	tdir_remove();
}

TestSuite(seedgen, .init = sg_setup, .fini = sg_teardown);

/* What the record file holds now. */
static struct seedgen_info file_info(void)
{
	uint8_t buf[SEEDGEN_LEN];
	struct seedgen_info info;
	const char *why = NULL;
	int fd = open(sg_path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, sizeof(buf), 0), SEEDGEN_LEN);
	close(fd);
	cr_assert_eq(seedgen_decode(buf, sizeof(buf), &info, &why), 0, "%s", why);
	return info;
}

static uint64_t file_gen(void)
{
	return file_info().reserved;
}

Test(seedgen, restart_goes_on_above_every_reservation)
{
	struct seedgen *g;
	struct seedgen_info info;
	int known = 7;

	cr_assert_eq(seedgen_open(sg_path, vol_a, 10, &g, &known, &info), 0);
	cr_assert_eq(known, 0, "a new volume");
	cr_assert_eq(file_gen(), 10, "generations 0..10 are covered at once");
	cr_assert_eq(seedgen_reserve(g, 10), 0);
	cr_assert_eq(file_gen(), 10);
	cr_assert_eq(seedgen_reserve(g, 11), 0);
	cr_assert_eq(file_gen(), 21, "raised, with the step, before 11 is published");
	seedgen_close(g); /* a crash: nothing more is written at close */

	cr_assert_eq(seedgen_open(sg_path, vol_a, 10, &g, &known, &info), 0);
	cr_assert_eq(known, 1);
	cr_assert_eq(info.reserved, 21, "a restart goes on above 21");
	cr_assert_arr_eq(info.volume_id, vol_a, 16);
	seedgen_close(g);
}

Test(seedgen, fixed_image_keeps_its_root)
{
	struct seedgen *g;
	struct seedgen_info info;
	uint8_t h[32] = {1, 2, 3};
	int known;

	cr_assert_eq(seedgen_open(sg_path, vol_a, 0, &g, &known, &info), 0);
	cr_assert_eq(known, 0);
	cr_assert_eq(file_gen(), 0);
	cr_assert_eq(seedgen_set_root(g, 0, h), 0);
	seedgen_close(g);
	cr_assert_eq(seedgen_open(sg_path, vol_a, 0, &g, &known, &info), 0);
	cr_assert_eq(known, 1);
	cr_assert_eq(info.reserved, 0);
	cr_assert_eq(info.root_gen, 0);
	cr_assert_arr_eq(info.root_hash, h, 32);
	/* Another root, at the next generation. */
	h[0] = 9;
	cr_assert_eq(seedgen_set_root(g, 1, h), 0);
	seedgen_close(g);
	info = file_info();
	cr_assert_eq(info.reserved, 1);
	cr_assert_eq(info.root_gen, 1);
	cr_assert_eq(info.root_hash[0], 9);
}

Test(seedgen, other_volume_is_replaced)
{
	struct seedgen *g;
	struct seedgen_info info;
	int known;

	cr_assert_eq(seedgen_open(sg_path, vol_a, 5, &g, &known, &info), 0);
	cr_assert_eq(seedgen_reserve(g, 40), 0);
	seedgen_close(g);
	cr_assert_eq(seedgen_open(sg_path, vol_b, 5, &g, &known, &info), 0);
	cr_assert_eq(known, 0, "a volume the record does not name is new here");
	seedgen_close(g);
	cr_assert_eq(seedgen_open(sg_path, vol_a, 5, &g, &known, &info), 0);
	cr_assert_eq(known, 0, "the record now names the other volume");
	seedgen_close(g);
}

Test(seedgen, malformed_record_is_refused_and_kept)
{
	struct seedgen *g = (struct seedgen *)1;
	struct seedgen_info info;
	int known;
	struct stat st;
	int fd = open(sg_path, O_WRONLY | O_CREAT, 0600);

	cr_assert_eq(write(fd, "garbage", 7), 7);
	close(fd);
	cr_assert_eq(seedgen_open(sg_path, vol_a, 5, &g, &known, &info), -1);
	cr_assert_null(g);
	cr_assert_eq(stat(sg_path, &st), 0);
	cr_assert_eq(st.st_size, 7, "left as it was");
}

Test(seedgen, decode_rejects_malformed)
{
	uint8_t buf[SEEDGEN_LEN + 1];
	struct seedgen_info in = {.reserved = UINT64_C(1) << 55, .root_gen = 1200}, out;
	const char *why;

	memcpy(in.volume_id, vol_a, 16);
	in.root_hash[5] = 0x55;
	seedgen_encode(buf, &in);
	cr_assert_eq(seedgen_decode(buf, SEEDGEN_LEN, &out, &why), 0);
	cr_assert_eq(out.reserved, UINT64_C(1) << 55);
	cr_assert_eq(out.root_gen, 1200);
	cr_assert_arr_eq(out.volume_id, vol_a, 16);
	cr_assert_arr_eq(out.root_hash, in.root_hash, 32);
	cr_assert_eq(seedgen_decode(buf, SEEDGEN_LEN - 1, &out, &why), -1);
	cr_assert_str_eq(why, "truncated");
	cr_assert_eq(seedgen_decode(buf, SEEDGEN_LEN + 1, &out, &why), -1);
	cr_assert_str_eq(why, "trailing bytes");
	for (size_t i = 0; i < SEEDGEN_LEN; i++) {
		/* Every byte outside the volume id, the generations and the hash matters;
		 * in those, bit 0 of byte 7 of either generation makes it 2^56 or more. */
		int free_field = i >= 16 && i < 80 && i != 39 && i != 47;

		seedgen_encode(buf, &in);
		buf[i] ^= 0x01;
		cr_assert_eq(seedgen_decode(buf, SEEDGEN_LEN, &out, &why), free_field ? 0 : -1,
		             "byte %zu", i);
	}
	in.reserved = UINT64_C(1) << 56;
	seedgen_encode(buf, &in);
	cr_assert_eq(seedgen_decode(buf, SEEDGEN_LEN, &out, &why), -1);
	cr_assert_str_eq(why, "generation out of range");
	in.reserved = 5;
	in.root_gen = 6;
	seedgen_encode(buf, &in);
	cr_assert_eq(seedgen_decode(buf, SEEDGEN_LEN, &out, &why), -1, "a root above R");
}
