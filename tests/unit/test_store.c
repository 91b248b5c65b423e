/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of store: state file creation and strict validation, the
 * commit ordering (an uncommitted chunk is missing after a crash), holes
 * for zero chunks, and chunk geometry.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "util.h"
#include "tdir.h"

#define CS (64u * 1024u) /* chunk size used by most tests */

static char st_dir[64];
static char st_img[128];
static char st_state[160];
static const uint8_t vol_a[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static const uint8_t vol_b[16] = {16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
/* Content ids the tests put chunks with (the store takes the hash it is given). */
static const uint8_t H[32] = {0xaa, 0xbb, 0xcc, 1, 2, 3};
static const uint8_t HZ[32] = {0x5a, 0x5b, 0x5c, 4, 5, 6};

static void st_setup(void)
{
	snprintf(st_dir, sizeof(st_dir), "%s", tdir_make("store"));
	snprintf(st_img, sizeof(st_img), "%s/out.img", st_dir);
	snprintf(st_state, sizeof(st_state), "%s%s", st_img, STORE_STATE_SUFFIX);
}

static void st_teardown(void)
{
	tdir_remove();
}

TestSuite(store, .init = st_setup, .fini = st_teardown);

/* Deterministic pseudo-random bytes (xorshift64), different per seed. */
static void fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
}

static off_t file_size(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return st.st_size;
}

static void write_file_at(const char *path, const void *buf, size_t len, off_t off)
{
	int fd = open(path, O_WRONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

static void write_record(uint32_t chunk, uint64_t rec)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(rec >> (8 * i));
	write_file_at(st_state, b, 8, STORE_HDR_LEN + 8 * (off_t)chunk);
}

/* Create a fresh store of n full chunks for volume A and close it. */
static void make_store(uint64_t size, uint32_t cs)
{
	struct store s;

	cr_assert_eq(store_open(&s, st_img, vol_a, size, cs, STORE_F_CREATE), 0);
	store_close(&s);
}

/*
 * store_open that must fail, with stderr captured: the message must contain
 * `needle`, so that each refusal says what is wrong.
 */
static void expect_open_fails(const uint8_t *vol, uint64_t size, uint32_t cs, int flags,
                              const char *needle)
{
	char logpath[160], msg[2048] = {0};
	struct store s;
	int saved, fd, rc;
	ssize_t n;

	snprintf(logpath, sizeof(logpath), "%s/stderr.log", st_dir);
	fflush(stderr);
	saved = dup(2);
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	dup2(fd, 2);
	rc = store_open(&s, st_img, vol, size, cs, flags);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, msg, sizeof(msg) - 1, 0);
	close(fd);
	unlink(logpath);
	if (rc == 0)
		store_close(&s);
	cr_assert_eq(rc, -1, "store_open should fail (%s)", needle);
	cr_assert_gt(n, 0, "no message logged");
	cr_assert_not_null(strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg, needle);
	cr_assert_eq(s.img_fd, -1);
	cr_assert_eq(s.state_fd, -1);
}

Test(store, create_and_reopen)
{
	struct store s;
	uint8_t hdr[STORE_HDR_LEN], want[STORE_HDR_LEN] = {0};
	uint32_t counts[4];
	uint64_t size = 10 * (uint64_t)CS;
	int fd;

	cr_assert_eq(store_open(&s, st_img, vol_a, size, CS, STORE_F_CREATE), 0);
	cr_assert_eq(s.chunk_count, 10);
	cr_assert_eq(s.present_bytes, 0);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_MISSING], 10);
	cr_assert_eq(counts[STORE_PRESENT] + counts[STORE_ZERO] + counts[STORE_LOCAL], 0);
	store_close(&s);
	cr_assert_eq(s.img_fd, -1);

	cr_assert_eq(file_size(st_img), (off_t)size);
	cr_assert_eq(file_size(st_state), STORE_HDR_LEN + 24 * 10);
	fd = open(st_state, O_RDONLY);
	cr_assert_eq(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	memcpy(want, "P2PVSTA1", 8);
	want[8] = 2;                  /* version, LE */
	want[12 + 2] = 1;             /* chunk size 0x10000, LE */
	want[16 + 2] = 0x0a;          /* image size 0xa0000, LE */
	memcpy(want + 24, vol_a, 16); /* volume id */
	want[40] = 10;                /* chunk count */
	cr_assert_arr_eq(hdr, want, sizeof(want));

	/* Reopen without STORE_F_CREATE: the existing pair is accepted. */
	cr_assert_eq(store_open(&s, st_img, vol_a, size, CS, 0), 0);
	cr_assert_eq(s.chunk_count, 10);
	store_close(&s);
	/* No temporary file is left behind. */
	char tmp[200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", st_state);
	cr_assert_eq(access(tmp, F_OK), -1);
}

Test(store, missing_image_without_create)
{
	expect_open_fails(vol_a, CS, CS, 0, "No such file");
	cr_assert_eq(access(st_img, F_OK), -1);
	cr_assert_eq(access(st_state, F_OK), -1);
}

Test(store, refuses_other_volume)
{
	make_store(4 * (uint64_t)CS, CS);
	expect_open_fails(vol_b, 4 * (uint64_t)CS, CS, STORE_F_CREATE, "another volume");
}

Test(store, refuses_other_chunk_size)
{
	make_store(4 * (uint64_t)CS, CS);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, 2 * CS, STORE_F_CREATE, "chunk size differs");
}

Test(store, refuses_other_image_size)
{
	make_store(4 * (uint64_t)CS, CS);
	expect_open_fails(vol_a, 4 * (uint64_t)CS + 1, CS, STORE_F_CREATE, "image size differs");
}

Test(store, refuses_bad_magic)
{
	make_store(4 * (uint64_t)CS, CS);
	write_file_at(st_state, "X", 1, 3);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "bad magic");
}

Test(store, refuses_bad_version)
{
	make_store(4 * (uint64_t)CS, CS);
	write_file_at(st_state, "\x03", 1, 8);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "version 3");
}

/* Format 1 trusted a chunk by its generation: such a file is refused, saying why. */
Test(store, refuses_format_1)
{
	make_store(4 * (uint64_t)CS, CS);
	write_file_at(st_state, "\x01", 1, 8);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "without content ids");
}

Test(store, refuses_nonzero_reserved)
{
	make_store(4 * (uint64_t)CS, CS);
	write_file_at(st_state, "\x01", 1, 63);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "reserved");
}

Test(store, refuses_truncated_state)
{
	make_store(4 * (uint64_t)CS, CS);
	cr_assert_eq(truncate(st_state, STORE_HDR_LEN + 24 * 4 - 1), 0);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "truncated");
	cr_assert_eq(truncate(st_state, 10), 0);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "shorter than its header");
}

Test(store, refuses_trailing_bytes)
{
	make_store(4 * (uint64_t)CS, CS);
	cr_assert_eq(truncate(st_state, STORE_HDR_LEN + 24 * 4 + 8), 0);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "trailing");
}

Test(store, refuses_unknown_record_state)
{
	make_store(4 * (uint64_t)CS, CS);
	write_record(2, (3ull << 8) | 7);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, 0, "chunk 2 has unknown state 7");
}

Test(store, refuses_resized_image)
{
	make_store(4 * (uint64_t)CS, CS);
	cr_assert_eq(truncate(st_img, 4 * (off_t)CS - 1), 0);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, STORE_F_CREATE, "state file says");
	cr_assert_eq(truncate(st_img, 4 * (off_t)CS + 1), 0);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, STORE_F_CREATE, "state file says");
	unlink(st_img);
	expect_open_fails(vol_a, 4 * (uint64_t)CS, CS, STORE_F_CREATE, "does not");
	/* The image must not have been re-created behind the state file's back. */
	cr_assert_eq(access(st_img, F_OK), -1);
}

Test(store, existing_image_needs_force)
{
	static uint8_t data[3 * CS];
	uint8_t back[CS];
	struct store s;
	uint32_t counts[4];
	int fd;

	fill_random(data, sizeof(data), 1);
	fd = open(st_img, O_WRONLY | O_CREAT, 0644);
	cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	close(fd);

	expect_open_fails(vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE, "use --force");
	/* Refusing touched nothing. */
	cr_assert_eq(file_size(st_img), 3 * (off_t)CS);
	cr_assert_eq(access(st_state, F_OK), -1);

	/* Forced: the image is cut to the volume's size and nothing in it is trusted. */
	cr_assert_eq(
	    store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE | STORE_F_FORCE), 0);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_MISSING], 2);
	cr_assert_eq(s.present_bytes, 0);
	cr_assert_eq(store_read(&s, CS, back, CS), 0);
	cr_assert_arr_eq(back, data + CS, CS);
	store_close(&s);
	cr_assert_eq(file_size(st_img), 2 * (off_t)CS);
	cr_assert_eq(file_size(st_state), STORE_HDR_LEN + 24 * 2);
}

Test(store, empty_existing_image_is_taken)
{
	struct store s;
	int fd = open(st_img, O_WRONLY | O_CREAT, 0644);

	close(fd);
	cr_assert_eq(store_open(&s, st_img, vol_a, 3 * (uint64_t)CS, CS, 0), 0);
	store_close(&s);
	cr_assert_eq(file_size(st_img), 3 * (off_t)CS);
}

Test(store, second_open_is_refused)
{
	struct store s;

	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	expect_open_fails(vol_a, 2 * (uint64_t)CS, CS, 0, "in use");
	store_close(&s);
}

Test(store, put_commit_reopen)
{
	static uint8_t a[CS], b[CS], c[CS], back[CS];
	struct store s;
	uint32_t counts[4];

	fill_random(a, CS, 11);
	fill_random(b, CS, 12);
	fill_random(c, CS, 13);
	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 1, 5, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 3, 7, H, b, CS), 0);
	/* Not marked before the commit. */
	cr_assert_eq(store_state_of(&s, 1), STORE_MISSING);
	cr_assert_eq(s.pending_bytes, 2 * CS);
	/* A newer generation of a pending chunk replaces it, not adds to it. */
	cr_assert_eq(store_put(&s, 1, 6, H, c, CS), 0);
	cr_assert_eq(s.npending, 2);
	cr_assert_eq(s.pending_bytes, 2 * CS);
	cr_assert_eq(store_commit(&s), 2);
	cr_assert_eq(s.npending, 0);
	cr_assert_eq(store_commit(&s), 0);
	cr_assert_eq(store_state_of(&s, 1), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 1), 6);
	cr_assert_eq(s.present_bytes, 2 * CS);
	store_close(&s);

	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 1), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 1), 6);
	cr_assert_eq(store_state_of(&s, 3), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 3), 7);
	cr_assert_eq(store_state_of(&s, 0), STORE_MISSING);
	cr_assert_eq(s.present_bytes, 2 * CS);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_MISSING], 2);
	cr_assert_eq(counts[STORE_PRESENT], 2);
	cr_assert_eq(store_read(&s, CS, back, CS), 0);
	cr_assert_arr_eq(back, c, CS);
	cr_assert_eq(store_read(&s, 3 * (uint64_t)CS, back, CS), 0);
	cr_assert_arr_eq(back, b, CS);
	store_close(&s);
}

Test(store, close_commits)
{
	static uint8_t a[CS];
	struct store s;

	fill_random(a, CS, 3);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 0, 9, H, a, CS), 0);
	store_close(&s);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 0), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 0), 9);
	store_close(&s);
}

/* Run fn in a child that exits without committing or closing: a crash, as far as the store sees. */
static void crash_child(void (*fn)(void))
{
	int status;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d)",
	          status);
}

static void child_put_commit_put(void)
{
	static uint8_t a[CS];
	struct store s;

	fill_random(a, CS, 21);
	if (store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, 0) < 0 ||
	    store_put(&s, 0, 3, H, a, CS) < 0 || store_commit(&s) != 1 ||
	    store_put(&s, 1, 3, H, a, CS) < 0 || store_put_zero(&s, 2, 3, HZ) < 0)
		_exit(1);
}

Test(store, uncommitted_put_is_missing_after_crash)
{
	struct store s;

	make_store(4 * (uint64_t)CS, CS);
	crash_child(child_put_commit_put);
	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 0), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 0), 3);
	cr_assert_eq(store_state_of(&s, 1), STORE_MISSING);
	cr_assert_eq(store_state_of(&s, 2), STORE_MISSING);
	cr_assert_eq(s.present_bytes, CS);
	store_close(&s);
}

static void child_overwrite_present(void)
{
	static uint8_t b[CS];
	struct store s;

	fill_random(b, CS, 32);
	if (store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, 0) < 0 ||
	    store_put(&s, 0, 2, H, b, CS) < 0 || store_put_zero(&s, 1, 2, HZ) < 0)
		_exit(1);
}

/*
 * Overwriting a committed chunk and crashing before the commit must not leave
 * the old mark vouching for the new bytes.
 */
Test(store, overwrite_then_crash_is_missing)
{
	static uint8_t a[CS];
	struct store s;

	fill_random(a, CS, 31);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 0, 1, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 1, 1, H, a, CS), 0);
	cr_assert_eq(store_commit(&s), 2);
	store_close(&s);

	crash_child(child_overwrite_present);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 0), STORE_MISSING);
	cr_assert_eq(store_gen_of(&s, 0), 1);
	cr_assert_eq(store_state_of(&s, 1), STORE_MISSING);
	cr_assert_eq(s.present_bytes, 0);
	store_close(&s);
}

Test(store, zero_chunk_punches_hole)
{
	const uint32_t cs = 1024 * 1024;
	uint8_t *data = malloc(4 * (size_t)cs);
	struct store s;
	struct stat st;
	uint32_t counts[4];

	cr_assert_not_null(data);
	fill_random(data, 4 * (size_t)cs, 41);
	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)cs, cs, STORE_F_CREATE), 0);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(store_put(&s, i, 1, H, data + (size_t)i * cs, cs), 0);
	cr_assert_eq(store_commit(&s), 4);
	cr_assert_eq(fstat(s.img_fd, &st), 0);
	cr_assert_geq((uint64_t)st.st_blocks * 512, 4 * (uint64_t)cs);

	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(store_put_zero(&s, i, 2, HZ), 0);
	cr_assert_eq(s.pending_bytes, 0);
	cr_assert_eq(store_commit(&s), 4);
	cr_assert_eq(fstat(s.img_fd, &st), 0);
	cr_assert_leq((uint64_t)st.st_blocks * 512, 64 * 1024, "%lld blocks left",
	              (long long)st.st_blocks);
	cr_assert_eq(st.st_size, 4 * (off_t)cs);
	cr_assert_eq(store_read(&s, 0, data, 4 * (size_t)cs), 0);
	for (size_t i = 0; i < 4 * (size_t)cs; i++)
		cr_assert_eq(data[i], 0, "byte %zu not zero", i);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_ZERO], 4);
	cr_assert_eq(s.present_bytes, 4 * (uint64_t)cs);
	/* Zero again at a newer generation: still zero, mark moves on. */
	cr_assert_eq(store_put_zero(&s, 0, 3, HZ), 0);
	cr_assert_eq(store_state_of(&s, 0), STORE_ZERO);
	cr_assert_eq(store_commit(&s), 1);
	cr_assert_eq(store_gen_of(&s, 0), 3);
	store_close(&s);

	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)cs, cs, 0), 0);
	cr_assert_eq(store_state_of(&s, 3), STORE_ZERO);
	cr_assert_eq(store_gen_of(&s, 3), 2);
	cr_assert_eq(store_gen_of(&s, 0), 3);
	store_close(&s);
	free(data);
}

Test(store, short_last_chunk)
{
	static uint8_t a[CS], back[CS];
	uint64_t size = 2 * (uint64_t)CS + CS / 2 + 3;
	struct store s;

	fill_random(a, CS, 51);
	cr_assert_eq(store_open(&s, st_img, vol_a, size, CS, STORE_F_CREATE), 0);
	cr_assert_eq(s.chunk_count, 3);
	cr_assert_eq(store_chunk_len(&s, 0), CS);
	cr_assert_eq(store_chunk_len(&s, 1), CS);
	cr_assert_eq(store_chunk_len(&s, 2), CS / 2 + 3);
	cr_assert_eq(store_chunk_len(&s, 3), 0);
	cr_assert_eq(store_put(&s, 2, 1, H, a, CS), -1);
	cr_assert_eq(store_put(&s, 3, 1, H, a, CS / 2 + 3), -1);
	cr_assert_eq(store_put(&s, 2, 1, H, a, CS / 2 + 3), 0);
	cr_assert_eq(store_commit(&s), 1);
	cr_assert_eq(s.present_bytes, CS / 2 + 3);
	cr_assert_eq(store_read(&s, 2 * (uint64_t)CS, back, CS / 2 + 3), 0);
	cr_assert_arr_eq(back, a, CS / 2 + 3);
	cr_assert_eq(store_read(&s, size - 1, back, 1), 0);
	cr_assert_eq(back[0], a[CS / 2 + 2]);
	cr_assert_eq(store_read(&s, size - 1, back, 2), -1);
	cr_assert_eq(store_read(&s, size, back, 1), -1);
	cr_assert_eq(store_read(&s, UINT64_MAX, back, 2), -1);
	cr_assert_eq(store_put_zero(&s, 2, 2, HZ), 0);
	cr_assert_eq(store_commit(&s), 1);
	cr_assert_eq(s.present_bytes, CS / 2 + 3);
	cr_assert_eq(store_read(&s, 2 * (uint64_t)CS, back, CS / 2 + 3), 0);
	for (uint32_t i = 0; i < CS / 2 + 3; i++)
		cr_assert_eq(back[i], 0);
	store_close(&s);
	cr_assert_eq(file_size(st_img), (off_t)size);
}

Test(store, counts_and_forget)
{
	static uint8_t a[CS];
	struct store s;
	uint32_t counts[4];

	fill_random(a, CS, 61);
	cr_assert_eq(store_open(&s, st_img, vol_a, 6 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 0, 4, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 1, 4, H, a, CS), 0);
	cr_assert_eq(store_put_zero(&s, 4, 4, HZ), 0);
	cr_assert_eq(store_put(&s, 5, 4, H, a, CS), 0);
	/* Forgetting a pending chunk drops it from the commit. */
	cr_assert_eq(store_forget(&s, 5), 0);
	cr_assert_eq(s.npending, 3);
	cr_assert_eq(store_commit(&s), 3);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_MISSING], 3);
	cr_assert_eq(counts[STORE_PRESENT], 2);
	cr_assert_eq(counts[STORE_ZERO], 1);
	cr_assert_eq(counts[STORE_LOCAL], 0);
	cr_assert_eq(s.present_bytes, 3 * (uint64_t)CS);

	cr_assert_eq(store_forget(&s, 1), 0);
	cr_assert_eq(store_state_of(&s, 1), STORE_MISSING);
	cr_assert_eq(store_gen_of(&s, 1), 4);
	cr_assert_eq(store_forget(&s, 2), 0); /* already missing */
	cr_assert_eq(store_forget(&s, 6), -1);
	cr_assert_eq(s.present_bytes, 2 * (uint64_t)CS);
	store_close(&s);

	/* The forget was durable at once. */
	cr_assert_eq(store_open(&s, st_img, vol_a, 6 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 1), STORE_MISSING);
	cr_assert_eq(store_gen_of(&s, 1), 4);
	cr_assert_eq(store_state_of(&s, 5), STORE_MISSING);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_MISSING], 4);
	cr_assert_eq(counts[STORE_PRESENT], 1);
	cr_assert_eq(counts[STORE_ZERO], 1);
	store_close(&s);
}

/* The record of chunk as it is in the state file now (not as the store holds it in memory). */
static uint64_t file_record(const struct store *s, uint32_t chunk)
{
	uint8_t b[8];
	uint64_t rec = 0;

	cr_assert_eq(pread(s->state_fd, b, 8, STORE_HDR_LEN + 8 * (off_t)chunk), 8);
	for (int i = 0; i < 8; i++)
		rec |= (uint64_t)b[i] << (8 * i);
	return rec;
}

/*
 * A chunk of a commit in flight (between begin and end, its syncs on a
 * worker) changes before the commit ends: put again at a newer generation,
 * made local, zeroed or forgotten. The commit must not mark it with what it
 * held before, neither in memory (a peer would be told it holds the old
 * generation) nor in the file (a crash would leave a record vouching for
 * bytes that are no longer there).
 */
Test(store, change_during_commit_before_records)
{
	static uint8_t a[CS], b[CS];
	struct store s;
	struct store_batch *batch;

	fill_random(a, CS, 71);
	fill_random(b, CS, 72);
	cr_assert_eq(store_open(&s, st_img, vol_a, 6 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 0, 1, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 1, 1, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 2, 1, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 3, 1, H, a, CS), 0);
	cr_assert_eq(store_put(&s, 4, 1, H, a, CS), 0);
	batch = store_commit_begin(&s);
	cr_assert_not_null(batch);
	/* Before the worker wrote any record: each change withdraws its chunk. */
	cr_assert_eq(store_put(&s, 1, 2, H, b, CS), 0);
	cr_assert_eq(store_mark_local(&s, 2), 0);
	cr_assert_eq(store_put_zero(&s, 3, 2, HZ), 0);
	cr_assert_eq(store_forget(&s, 4), 0);
	cr_assert_eq(store_commit_sync(&s, batch), 0);
	cr_assert_eq(store_commit_end(&s, batch, 0), 5);
	cr_assert_null(s.inflight);
	/* Only chunk 0 was marked; the others wait for the next commit (4: forgotten). */
	cr_assert_eq(store_state_of(&s, 0), STORE_PRESENT);
	cr_assert_eq(file_record(&s, 0), (1ull << 8) | STORE_PRESENT);
	for (uint32_t c = 1; c <= 4; c++) {
		cr_assert_eq(store_state_of(&s, c), STORE_MISSING, "chunk %u", c);
		cr_assert_eq(file_record(&s, c) & 0xff, STORE_MISSING, "chunk %u", c);
	}
	cr_assert_eq(store_gen_of(&s, 1), 2); /* the data in the image: served as generation 2 */
	cr_assert_eq(s.present_bytes, CS);
	cr_assert_eq(store_commit(&s), 3);
	cr_assert_eq(store_state_of(&s, 1), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 1), 2);
	cr_assert_eq(store_state_of(&s, 2), STORE_LOCAL);
	cr_assert_eq(store_state_of(&s, 3), STORE_ZERO);
	cr_assert_eq(store_gen_of(&s, 3), 2);
	cr_assert_eq(store_state_of(&s, 4), STORE_MISSING);
	cr_assert_eq(s.present_bytes, 4 * (uint64_t)CS);
	store_close(&s);
	cr_assert_eq(store_open(&s, st_img, vol_a, 6 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 1), STORE_PRESENT);
	cr_assert_eq(store_gen_of(&s, 1), 2);
	cr_assert_eq(store_state_of(&s, 2), STORE_LOCAL);
	cr_assert_eq(store_state_of(&s, 4), STORE_MISSING);
	store_close(&s);
}

Test(store, change_during_commit_after_records)
{
	static uint8_t a[CS], b[CS];
	struct store s;
	struct store_batch *batch;

	fill_random(a, CS, 73);
	fill_random(b, CS, 74);
	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	for (uint32_t c = 0; c < 4; c++)
		cr_assert_eq(store_put(&s, c, 1, H, a, CS), 0);
	batch = store_commit_begin(&s);
	cr_assert_not_null(batch);
	/* The worker wrote the records (PRESENT at generation 1) but the commit has not ended. */
	cr_assert_eq(store_commit_sync(&s, batch), 0);
	cr_assert_eq(file_record(&s, 1), (1ull << 8) | STORE_PRESENT);
	/* A change now must replace the record, durably, before it returns. */
	cr_assert_eq(store_put_begin(&s, 1, 2, CS), 0);
	cr_assert_eq(file_record(&s, 1) & 0xff, STORE_MISSING);
	cr_assert_eq(store_write(&s, 1, b, CS), 0);
	store_put_end(&s, 1, 2, H);
	cr_assert_eq(store_mark_local(&s, 2), 0);
	cr_assert_eq(file_record(&s, 2) & 0xff, STORE_LOCAL);
	cr_assert_eq(store_put_zero(&s, 3, 2, HZ), 0);
	cr_assert_eq(file_record(&s, 3) & 0xff, STORE_MISSING);
	cr_assert_eq(store_commit_end(&s, batch, 0), 4);
	cr_assert_eq(store_state_of(&s, 0), STORE_PRESENT);
	cr_assert_eq(store_state_of(&s, 1), STORE_MISSING);
	cr_assert_eq(store_gen_of(&s, 1), 2);
	cr_assert_eq(store_state_of(&s, 2), STORE_LOCAL);
	cr_assert_eq(store_state_of(&s, 3), STORE_MISSING);
	cr_assert_eq(s.present_bytes, 2 * (uint64_t)CS);
	cr_assert_eq(store_commit(&s), 2);
	cr_assert_eq(store_state_of(&s, 1), STORE_PRESENT);
	cr_assert_eq(file_record(&s, 1), (2ull << 8) | STORE_PRESENT);
	cr_assert_eq(store_state_of(&s, 3), STORE_ZERO);
	cr_assert_eq(s.present_bytes, 4 * (uint64_t)CS);
	store_close(&s);
}

Test(store, local_chunks_are_kept)
{
	static uint8_t a[CS];
	struct store s;
	uint32_t counts[4];

	make_store(3 * (uint64_t)CS, CS);
	write_record(1, (9ull << 8) | STORE_LOCAL);
	cr_assert_eq(store_open(&s, st_img, vol_a, 3 * (uint64_t)CS, CS, 0), 0);
	store_counts(&s, counts);
	cr_assert_eq(counts[STORE_LOCAL], 1);
	cr_assert_eq(store_gen_of(&s, 1), 9);
	cr_assert_eq(s.present_bytes, CS);
	cr_assert_eq(store_put(&s, 1, 10, H, a, CS), -1);
	cr_assert_eq(store_put_zero(&s, 1, 10, HZ), -1);
	cr_assert_eq(store_forget(&s, 1), -1);
	cr_assert_eq(store_state_of(&s, 1), STORE_LOCAL);
	cr_assert_eq(s.npending, 0);
	store_close(&s);
}

Test(store, bad_arguments)
{
	static uint8_t a[CS];
	struct store s;

	expect_open_fails(vol_a, 0, CS, STORE_F_CREATE, "must not be zero");
	expect_open_fails(vol_a, CS, 0, STORE_F_CREATE, "must not be zero");
	expect_open_fails(vol_a, (uint64_t)UINT32_MAX * 2 + 4, 2, STORE_F_CREATE, "too large");
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 2, 1, H, a, CS), -1);
	cr_assert_eq(store_put(&s, 0, 1ull << 56, H, a, CS), -1);
	cr_assert_eq(store_put_zero(&s, 2, 1, HZ), -1);
	cr_assert_eq(s.npending, 0);
	store_close(&s);
}

/*
 * Identity is content (DESIGN rule 7): a held chunk is the chunk of an entry
 * only if it was verified against that entry's hash. A generation that
 * matches proves nothing (a restarted source reuses numbers); a hash that
 * matches at another generation is the same chunk.
 */
Test(store, holds_by_content_id)
{
	static uint8_t a[CS];
	static const uint8_t other[32] = {0xaa, 0xbb, 0xcc, 1, 2, 4};
	static const uint8_t none[32];
	struct store s;

	fill_random(a, CS, 81);
	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_holds(&s, 0, H), 0, "nothing is held in a new store");
	cr_assert_eq(store_holds(&s, 0, none), 0, "an all-zero hash never matches");
	cr_assert_eq(store_put(&s, 0, 25, H, a, CS), 0);
	cr_assert_eq(store_holds(&s, 0, H), 1, "a pending chunk is held");
	cr_assert_eq(store_holds(&s, 0, other), 0);
	cr_assert_eq(store_put_zero(&s, 1, 25, HZ), 0);
	cr_assert_eq(store_holds(&s, 1, HZ), 1);
	cr_assert_eq(store_holds(&s, 9, H), 0, "out of range");
	cr_assert_eq(store_commit(&s), 2);
	store_close(&s);

	/* After a restart the ids come back from the file. */
	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_holds(&s, 0, H), 1);
	cr_assert_eq(store_holds(&s, 0, other), 0, "same generation, other content: not held");
	cr_assert_eq(store_holds(&s, 1, HZ), 1);
	/* The same content at a later generation: relabelled, not fetched again. */
	store_relabel(&s, 0, 1030);
	cr_assert_eq(store_gen_of(&s, 0), 1030);
	cr_assert_eq(store_state_of(&s, 0), STORE_PRESENT);
	/* Its bytes about to change: held no more, even before the new put ends. */
	cr_assert_eq(store_put_begin(&s, 0, 1031, CS), 0);
	cr_assert_eq(store_holds(&s, 0, H), 0);
	store_put_end(&s, 0, 1031, other);
	cr_assert_eq(store_holds(&s, 0, other), 1);
	/* Forgotten, made local: nothing. */
	cr_assert_eq(store_forget(&s, 0), 0);
	cr_assert_eq(store_holds(&s, 0, other), 0);
	cr_assert_eq(store_mark_local(&s, 1), 0);
	cr_assert_eq(store_holds(&s, 1, HZ), 0);
	store_close(&s);

	cr_assert_eq(store_open(&s, st_img, vol_a, 4 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_holds(&s, 0, other), 0);
	cr_assert_eq(store_holds(&s, 0, H), 0);
	cr_assert_eq(store_holds(&s, 1, HZ), 0);
	store_close(&s);
}

/* A relabel during a commit in flight is not undone by the commit's end. */
Test(store, relabel_survives_commit_end)
{
	static uint8_t a[CS];
	struct store s;
	struct store_batch *b;

	fill_random(a, CS, 82);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 0, 3, H, a, CS), 0);
	b = store_commit_begin(&s);
	cr_assert_not_null(b);
	store_relabel(&s, 0, 9);
	cr_assert_eq(store_commit_end(&s, b, store_commit_sync(&s, b)), 1);
	cr_assert_eq(store_gen_of(&s, 0), 9);
	cr_assert_eq(store_state_of(&s, 0), STORE_PRESENT);
	store_close(&s);
}

/*
 * The content id is durable before the record that makes it count: after a
 * crash between the two, a chunk rewritten with other bytes is never held
 * under its old id (a source that goes back to the old content would
 * otherwise be answered with the new bytes).
 */
static void crash_after_ids(void)
{
	static uint8_t b[CS];
	static const uint8_t other[32] = {0x11, 0x22, 0x33};
	struct store s;
	struct store_batch *batch;

	fill_random(b, CS, 84);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_put(&s, 0, 5, other, b, CS), 0);
	batch = store_commit_begin(&s);
	/* Only the ids and the image are written: what a crash between the two syncs leaves. */
	cr_assert_eq(fdatasync(s.img_fd), 0);
	cr_assert_eq(pwrite(s.state_fd, other, STORE_ID_LEN, STORE_HDR_LEN + 8 * 2), STORE_ID_LEN);
	(void)batch;
	_exit(0);
}

Test(store, crash_between_ids_and_records)
{
	static uint8_t a[CS];
	static const uint8_t other[32] = {0x11, 0x22, 0x33};
	struct store s;

	fill_random(a, CS, 83);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_put(&s, 0, 4, H, a, CS), 0);
	cr_assert_eq(store_commit(&s), 1);
	store_close(&s);
	crash_child(crash_after_ids);
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_state_of(&s, 0), STORE_MISSING, "put_begin marked it missing first");
	cr_assert_eq(store_holds(&s, 0, H), 0);
	cr_assert_eq(store_holds(&s, 0, other), 0);
	store_close(&s);
}

/* The newest root generation verified is kept, only goes up, and is read without opening. */
Test(store, root_generation_is_kept)
{
	struct store s;
	uint64_t g = 99;
	char sidecar[200];

	snprintf(sidecar, sizeof(sidecar), "%s", st_img);
	cr_assert_eq(store_peek_root_gen(sidecar, vol_a, &g), 0);
	cr_assert_eq(g, 0, "no state file: nothing verified");
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, STORE_F_CREATE), 0);
	cr_assert_eq(store_root_gen(&s), 0);
	cr_assert_eq(store_note_root(&s, 25), 0);
	cr_assert_eq(store_note_root(&s, 7), 0);
	cr_assert_eq(store_root_gen(&s), 25, "never lowered");
	store_close(&s);
	cr_assert_eq(store_peek_root_gen(sidecar, vol_a, &g), 0);
	cr_assert_eq(g, 25);
	cr_assert_eq(store_peek_root_gen(sidecar, vol_b, &g), 0);
	cr_assert_eq(g, 0, "another volume's file says nothing about this one");
	cr_assert_eq(store_open(&s, st_img, vol_a, 2 * (uint64_t)CS, CS, 0), 0);
	cr_assert_eq(store_root_gen(&s), 25);
	store_close(&s);
}
