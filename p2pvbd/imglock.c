/* SPDX-License-Identifier: ISC */
/*
 * imglock: QEMU-compatible OFD locks on disk images. See imglock.h for the
 * scheme; this file picks the permissions of each mode and says, when a lock
 * is refused, what holds the image in words an operator understands.
 */
#include "imglock.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIT(p) (1u << (p))

struct imglock {
	int fd; /* our own open file description: the locks belong to it */
};

/*
 * What each mode uses and what it does not share, as masks of BIT(perm).
 *
 * SHARED_READ is what QEMU takes for a read-only user that cannot stand a
 * writer (a qcow2 image opened read-only): consistent read, and neither
 * write nor resize shared. Write-unchanged stays shared as QEMU shares it:
 * such a write puts back the bytes that are there, and here nobody changes
 * them.
 *
 * EXCLUSIVE uses consistent read, write and resize, and shares nothing.
 * A VM's writable disk in QEMU (a device with share-rw=off) refuses other
 * writers, qemu-nbd refuses resizers, and QEMU's mirror target
 * (block/mirror.c) refuses consistent readers too, because until the copy
 * is done a reader cannot get a consistent view. fetch's OUT is exactly such a target, and seed
 * -e's image is a running VM's disk changing under any reader; both can be read while in use
 * through our NBD export instead. Write-unchanged is not shared either: another process's
 * "unchanged" write rewrites bytes it read earlier, which may put back bytes we have replaced
 * since. A consequence operators meet: qemu-img info -U works on such an image, qemu-io and
 * qemu-img compare do not even with -U (they need consistent read).
 */
static const struct {
	unsigned use, unshared;
} modes[] = {
    [IMGLOCK_SHARED_READ] = {BIT(IMGLOCK_CONSISTENT_READ),
                             BIT(IMGLOCK_WRITE) | BIT(IMGLOCK_RESIZE)},
    [IMGLOCK_EXCLUSIVE] = {BIT(IMGLOCK_CONSISTENT_READ) | BIT(IMGLOCK_WRITE) | BIT(IMGLOCK_RESIZE),
                           BIT(IMGLOCK_CONSISTENT_READ) | BIT(IMGLOCK_WRITE) |
                               BIT(IMGLOCK_WRITE_UNCHANGED) | BIT(IMGLOCK_RESIZE)},
};

/*
 * In plain words: who holds PERM byte b (someone uses b, which we do not
 * share), and who holds SHARED byte b (someone forbids b, which we use).
 */
static const char *const user_of[IMGLOCK_NPERMS] = {
    [IMGLOCK_CONSISTENT_READ] = "QEMU, qemu-nbd, qemu-img or another p2pvbd is reading it",
    [IMGLOCK_WRITE] = "QEMU, qemu-nbd or another p2pvbd has it open for writing",
    [IMGLOCK_WRITE_UNCHANGED] = "a QEMU process writes to it",
    [IMGLOCK_RESIZE] = "QEMU or another p2pvbd may resize it",
};
static const char *const forbidder_of[IMGLOCK_NPERMS] = {
    [IMGLOCK_CONSISTENT_READ] = "a p2pvbd seed -e or fetch, or a QEMU block job, is writing it "
                                "and lets nobody else read it",
    [IMGLOCK_WRITE] = "a VM in QEMU, a qemu-img or qemu-io reading it, or a p2pvbd seed lets "
                      "nobody else write it",
    [IMGLOCK_WRITE_UNCHANGED] = "QEMU or another p2pvbd lets nobody else write it",
    [IMGLOCK_RESIZE] = "QEMU, qemu-nbd or another p2pvbd lets nobody else resize it",
};

/* Probe order: the conflicts that explain most come first in the message. */
static const enum imglock_perm probe_order[IMGLOCK_NPERMS] = {
    IMGLOCK_WRITE, IMGLOCK_RESIZE, IMGLOCK_CONSISTENT_READ, IMGLOCK_WRITE_UNCHANGED};

/* Errors that mean "this file system (or kernel) has no OFD locks". */
static int unsupported(int err)
{
	return err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP || err == ENOLCK;
}

/* Read-lock one byte: 0 or -errno. */
static int lock_byte(int fd, int off)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_RDLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = off;
	fl.l_len = 1;
	return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/*
 * Does anyone else hold a lock on byte off? As QEMU asks it: would a write
 * lock be refused (our own read locks never count, they belong to fd).
 * 1 held, 0 free, -errno.
 */
static int byte_held(int fd, int off)
{
	struct flock fl;

	memset(&fl, 0, sizeof(fl));
	fl.l_type = F_WRLCK;
	fl.l_whence = SEEK_SET;
	fl.l_start = off;
	fl.l_len = 1;
	if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
		return -errno;
	return fl.l_type != F_UNLCK;
}

static void refuse(const char *path, const char *who)
{
	log_error("%s is in use by another process (%s); stop it first", path, who);
}

/* Take the mode's bytes: 0, 1 (no OFD locks here: warned), or -errno (logged). */
static int take_bytes(const char *path, int fd, enum imglock_mode mode)
{
	for (int i = 0; i < 2 * IMGLOCK_NPERMS; i++) {
		int b = i % IMGLOCK_NPERMS, shared = i >= IMGLOCK_NPERMS;
		unsigned mask = shared ? modes[mode].unshared : modes[mode].use;
		int rc;

		if (!(mask & BIT(b)))
			continue;
		rc = lock_byte(fd, (shared ? IMGLOCK_SHARED_BASE : IMGLOCK_PERM_BASE) + b);
		if (rc == 0)
			continue;
		if (unsupported(-rc)) {
			log_warn("%s: cannot lock the image (%s): QEMU and other p2pvbd processes "
			         "will not see that it is in use",
			         path, strerror(-rc));
			return 1;
		}
		if (rc == -EAGAIN || rc == -EACCES) {
			/* Only a write lock blocks a read lock; QEMU never takes one. */
			refuse(path, "a program that is not QEMU holds a write lock on it");
			return -EAGAIN;
		}
		log_error("%s: locking the image: %s", path, strerror(-rc));
		return rc;
	}
	return 0;
}

/* Is byte off held by someone else? 0 free, -EAGAIN (refusal logged, naming who), -errno. */
static int probe(const char *path, int fd, int off, const char *who)
{
	int rc = byte_held(fd, off);

	if (rc == 1) {
		refuse(path, who);
		return -EAGAIN;
	}
	if (rc < 0)
		log_error("%s: checking the image's locks: %s", path, strerror(-rc));
	return rc;
}

/* With our bytes taken: is anyone in the way? 0, or -errno (logged). */
static int check_others(const char *path, int fd, enum imglock_mode mode)
{
	for (int i = 0; i < IMGLOCK_NPERMS; i++) {
		enum imglock_perm b = probe_order[i];
		int rc;

		if ((modes[mode].unshared & BIT(b)) &&
		    (rc = probe(path, fd, IMGLOCK_PERM_BASE + (int)b, user_of[b])) != 0)
			return rc;
		if ((modes[mode].use & BIT(b)) &&
		    (rc = probe(path, fd, IMGLOCK_SHARED_BASE + (int)b, forbidder_of[b])) != 0)
			return rc;
	}
	return 0;
}

int imglock_acquire(const char *path, int image_fd, enum imglock_mode mode, struct imglock **out)
{
	struct stat a, b;
	int fd, rc;

	*out = NULL;
	/* O_NONBLOCK: opening never waits (a FIFO); no I/O is done on fd. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		rc = -errno;
		log_error("cannot open %s to lock it: %s", path, strerror(-rc));
		return rc;
	}
	if (image_fd >= 0) {
		if (fstat(fd, &a) != 0 || fstat(image_fd, &b) != 0) {
			rc = -errno;
			log_error("%s: %s", path, strerror(-rc));
			goto fail;
		}
		if (a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
			log_error("%s was replaced by another file while it was being opened",
			          path);
			rc = -ESTALE;
			goto fail;
		}
	}
	rc = take_bytes(path, fd, mode);
	if (rc == 1) {
		close(fd);
		return 0;
	}
	if (rc == 0)
		rc = check_others(path, fd, mode);
	if (rc != 0)
		goto fail;
	*out = xmalloc(sizeof(**out));
	(*out)->fd = fd;
	log_debug("%s: locked %s", path, mode == IMGLOCK_EXCLUSIVE ? "exclusive" : "shared-read");
	return 0;
fail:
	close(fd); /* releases whatever was taken */
	return rc;
}

void imglock_release(struct imglock *l)
{
	if (l == NULL)
		return;
	close(l->fd);
	free(l);
}
