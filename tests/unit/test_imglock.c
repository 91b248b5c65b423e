/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of imglock: the bytes each mode holds are QEMU's (checked with
 * F_OFD_GETLK from a descriptor of our own, as QEMU checks them), two locks
 * of one process conflict as two processes would (OFD locks belong to the
 * open file description), a refused attempt leaves nothing behind, release
 * frees the image, and a path replaced after it was opened is refused.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "imglock.h"
#include "util.h"
#include "tdir.h"

static char il_dir[64];
static char il_img[128];

static void il_setup(void)
{
	int fd;

	snprintf(il_dir, sizeof(il_dir), "%s", tdir_make("imglock"));
	snprintf(il_img, sizeof(il_img), "%s/disk.img", il_dir);
	fd = open(il_img, O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
}

static void il_teardown(void)
{
	tdir_remove();
}

TestSuite(imglock, .init = il_setup, .fini = il_teardown);

/* Would a write lock on byte off be refused for a fresh descriptor? (QEMU's probe.) */
static int held(int off)
{
	struct flock fl;
	int fd = open(il_img, O_RDONLY);

	cr_assert_geq(fd, 0);
	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = off;
	fl.l_len = 1;
	cr_assert_eq(fcntl(fd, F_OFD_GETLK, &fl), 0, "F_OFD_GETLK: %s", strerror(errno));
	close(fd);
	return fl.l_type != F_UNLCK;
}

/* Bytes 100..103 and 200..203 that are held, as a mask: bit b = 100 + b, bit 4 + b = 200 + b. */
static unsigned held_mask(void)
{
	unsigned m = 0;

	for (int b = 0; b < IMGLOCK_NPERMS; b++) {
		m |= (unsigned)held(IMGLOCK_PERM_BASE + b) << b;
		m |= (unsigned)held(IMGLOCK_SHARED_BASE + b) << (4 + b);
	}
	return m;
}

/* A descriptor holding read locks on the given bytes, as a QEMU process would. */
static int qemu_like(const int *bytes, int n)
{
	int fd = open(il_img, O_RDONLY);

	cr_assert_geq(fd, 0);
	for (int i = 0; i < n; i++) {
		struct flock fl;

		memset(&fl, 0, sizeof(fl));
		fl.l_type = F_RDLCK;
		fl.l_whence = SEEK_SET;
		fl.l_start = bytes[i];
		fl.l_len = 1;
		cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0);
	}
	return fd;
}

/* imglock_acquire with stderr captured into msg; returns its result. */
static int acquire_logged(enum imglock_mode mode, struct imglock **l, char *msg, size_t cap)
{
	char logpath[160];
	int saved, fd, rc;
	ssize_t n;

	snprintf(logpath, sizeof(logpath), "%s/stderr.log", il_dir);
	fflush(stderr);
	saved = dup(2);
	fd = open(logpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	dup2(fd, 2);
	rc = imglock_acquire(il_img, -1, mode, l);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	n = pread(fd, msg, cap - 1, 0);
	msg[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(logpath);
	return rc;
}

/* A refusal: -EAGAIN, no lock, and a message naming the image and the holder. */
static void expect_refused(enum imglock_mode mode, const char *holder)
{
	struct imglock *l = (struct imglock *)1;
	char msg[1024];

	cr_assert_eq(acquire_logged(mode, &l, msg, sizeof(msg)), -EAGAIN, "log: %s", msg);
	cr_assert_null(l);
	cr_assert_not_null(strstr(msg, il_img), "message lacks the path: %s", msg);
	cr_assert_not_null(strstr(msg, "in use by another process"), "message: %s", msg);
	cr_assert_not_null(strstr(msg, holder), "message lacks \"%s\": %s", holder, msg);
}

Test(imglock, shared_read_holds_qemus_bytes)
{
	struct imglock *l;

	cr_assert_eq(held_mask(), 0);
	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &l), 0);
	cr_assert_not_null(l);
	/* uses consistent read (100); shares neither write (201) nor resize (203) */
	cr_assert_eq(held_mask(), (1u << 0) | (1u << (4 + 1)) | (1u << (4 + 3)), "mask %#x",
	             held_mask());
	imglock_release(l);
	cr_assert_eq(held_mask(), 0);
}

Test(imglock, exclusive_holds_qemus_bytes)
{
	struct imglock *l;

	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_EXCLUSIVE, &l), 0);
	cr_assert_not_null(l);
	/* uses read, write, resize (100, 101, 103); shares nothing (200..203) */
	cr_assert_eq(held_mask(), 0x0bu | 0xf0u, "mask %#x", held_mask());
	imglock_release(l);
	cr_assert_eq(held_mask(), 0);
}

Test(imglock, readers_coexist)
{
	struct imglock *a, *b;

	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &a), 0);
	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &b), 0);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	imglock_release(a);
	/* b still holds its bytes */
	cr_assert(held(IMGLOCK_PERM_BASE + IMGLOCK_CONSISTENT_READ));
	cr_assert(held(IMGLOCK_SHARED_BASE + IMGLOCK_WRITE));
	imglock_release(b);
	cr_assert_eq(held_mask(), 0);
}

Test(imglock, exclusive_refuses_everyone)
{
	struct imglock *a;

	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_EXCLUSIVE, &a), 0);
	expect_refused(IMGLOCK_SHARED_READ, "has it open for writing");
	expect_refused(IMGLOCK_EXCLUSIVE, "has it open for writing");
	/* The refused attempts released what they had taken. */
	cr_assert_eq(held_mask(), 0x0bu | 0xf0u);
	imglock_release(a);
	cr_assert_eq(held_mask(), 0);
}

Test(imglock, reader_refuses_a_writer)
{
	struct imglock *a, *b;

	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &a), 0);
	expect_refused(IMGLOCK_EXCLUSIVE, "lets nobody else write it");
	/* Nothing of the refused attempt is left: another reader still fits. */
	cr_assert_eq(held_mask(), (1u << 0) | (1u << (4 + 1)) | (1u << (4 + 3)));
	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &b), 0);
	imglock_release(a);
	imglock_release(b);
	/* Released: the writer gets it now. */
	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_EXCLUSIVE, &a), 0);
	cr_assert_not_null(a);
	imglock_release(a);
}

/* The bytes qemu-io / qemu-nbd hold on a raw image they have open (seen in /proc/locks). */
Test(imglock, qemu_writer_refuses_both_modes)
{
	const int qemu_rw[] = {100, 101};      /* qemu-io: consistent read + write, shares all */
	const int vm_disk[] = {100, 101, 201}; /* a VM's virtio disk: also unshares write */
	int fd = qemu_like(qemu_rw, 2);

	expect_refused(IMGLOCK_SHARED_READ, "has it open for writing");
	expect_refused(IMGLOCK_EXCLUSIVE, "has it open for writing");
	close(fd);
	fd = qemu_like(vm_disk, 3);
	expect_refused(IMGLOCK_SHARED_READ, "has it open for writing");
	close(fd);
	cr_assert_eq(held_mask(), 0);
}

Test(imglock, qemu_reader_is_welcome_only_to_readers)
{
	const int qemu_ro[] = {100};          /* qemu-io -r on a raw image: consistent read */
	const int qemu_nbd_ro[] = {100, 203}; /* qemu-nbd -r: also unshares resize */
	struct imglock *l;
	int fd = qemu_like(qemu_ro, 1);

	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &l), 0);
	imglock_release(l);
	expect_refused(IMGLOCK_EXCLUSIVE, "is reading it");
	close(fd);
	fd = qemu_like(qemu_nbd_ro, 2);
	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &l), 0);
	imglock_release(l);
	expect_refused(IMGLOCK_EXCLUSIVE, "lets nobody else resize it");
	close(fd);
}

Test(imglock, a_replaced_path_is_refused)
{
	char old[160];
	struct imglock *l = (struct imglock *)1;
	int fd = open(il_img, O_RDONLY), nfd;

	cr_assert_geq(fd, 0);
	/* Same file: fine. */
	cr_assert_eq(imglock_acquire(il_img, fd, IMGLOCK_SHARED_READ, &l), 0);
	imglock_release(l);
	/* The path now names another file than the one open. */
	snprintf(old, sizeof(old), "%s.old", il_img);
	cr_assert_eq(rename(il_img, old), 0);
	nfd = open(il_img, O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(nfd, 0);
	close(nfd);
	cr_assert_eq(imglock_acquire(il_img, fd, IMGLOCK_SHARED_READ, &l), -ESTALE);
	cr_assert_null(l);
	close(fd);
}

Test(imglock, missing_file_is_an_error)
{
	struct imglock *l = (struct imglock *)1;

	cr_assert_eq(unlink(il_img), 0);
	cr_assert_eq(imglock_acquire(il_img, -1, IMGLOCK_SHARED_READ, &l), -ENOENT);
	cr_assert_null(l);
}
