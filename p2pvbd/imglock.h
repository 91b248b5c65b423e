/* SPDX-License-Identifier: ISC */
/*
 * imglock: advisory locks on disk images that QEMU understands, so that
 * QEMU (qemu-system, qemu-nbd, qemu-img, qemu-io) and p2pvbd see each
 * other's use of an image and neither writes under the other.
 *
 * The scheme is QEMU's (block/file-posix.c, "locking=auto"): open file
 * description (OFD) locks, fcntl(F_OFD_SETLK), on single bytes of the image
 * file. For each permission b of QEMU's block layer (consistent read 0,
 * write 1, write-unchanged 2, resize 3) a user read-locks
 *
 *   byte IMGLOCK_PERM_BASE + b    "I use permission b", and
 *   byte IMGLOCK_SHARED_BASE + b  "I let nobody else have permission b".
 *
 * It takes its bytes first and then probes (F_OFD_GETLK with a write lock)
 * that nobody else holds the SHARED byte of a permission it uses, or the
 * PERM byte of a permission it does not share. Taking before probing means
 * that two users starting at the same moment both see each other and both
 * refuse; they never both go ahead. The locks are read locks, so taking one
 * never fails because of another user's.
 *
 * OFD locks belong to the open file description, not to the process: an
 * imglock opens its own descriptor on the image, and two imglocks of one
 * process conflict exactly as two processes do. Closing it (or exiting)
 * releases everything.
 */
#ifndef P2PVBD_IMGLOCK_H
#define P2PVBD_IMGLOCK_H

/* QEMU's byte offsets (libvirt uses byte 0; QEMU starts higher). */
#define IMGLOCK_PERM_BASE   100
#define IMGLOCK_SHARED_BASE 200

/* QEMU's permission bits (BLK_PERM_*), as bit numbers. */
enum imglock_perm {
	IMGLOCK_CONSISTENT_READ = 0,
	IMGLOCK_WRITE = 1,
	IMGLOCK_WRITE_UNCHANGED = 2,
	IMGLOCK_RESIZE = 3,
};
#define IMGLOCK_NPERMS 4

enum imglock_mode {
	/*
	 * A plain `seed`: it reads an image that must not change. Uses
	 * consistent read; does not share write or resize (a QEMU or qemu-nbd
	 * that wants to write is refused, and an image someone writes is
	 * refused); other readers are welcome.
	 */
	IMGLOCK_SHARED_READ,
	/*
	 * `seed -e` (the VM's disk, written through our NBD export) and
	 * fetch's OUT (being filled): uses consistent read, write and resize
	 * and shares nothing (see imglock.c for why readers are kept out too).
	 */
	IMGLOCK_EXCLUSIVE,
};

struct imglock;

/*
 * Lock the image at path in mode. If image_fd >= 0, path must still name
 * the file open as image_fd (else it was replaced meanwhile: refused).
 * Returns 0 with *out set (the caller owns it; NULL when the file system
 * cannot hold OFD locks: a warning is logged and nothing is locked, as QEMU
 * does), -EAGAIN if another user holds a conflicting lock (logged, saying
 * what holds it in plain words), or another negative errno (logged).
 */
int imglock_acquire(const char *path, int image_fd, enum imglock_mode mode, struct imglock **out);

/* Release the locks and free l (NULL is fine). */
void imglock_release(struct imglock *l);

#endif
