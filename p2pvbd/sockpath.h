/* SPDX-License-Identifier: ISC */
/*
 * sockpath: Unix socket paths we were given (-e unix:PATH, --ctl PATH).
 * A path is ours only if we made the socket there: a file that is not a
 * socket is refused, never replaced; a socket that still accepts
 * connections belongs to a running process and is refused ("in use"); only
 * a stale socket (nobody listening) is removed. At exit we remove the
 * socket only if it is still the one we made (same device and inode), so a
 * later process that took the path over keeps it.
 */
#ifndef P2PVBD_SOCKPATH_H
#define P2PVBD_SOCKPATH_H

#include <sys/types.h>

struct sockpath {
	char *path; /* owned; NULL: nothing made */
	dev_t dev;
	ino_t ino;
};

/*
 * Make path free for a new socket: 0 if nothing is there or a stale socket
 * was removed; -1 (logged, naming what) if it is not a socket, is in use,
 * or cannot be checked. what names the socket in messages ("control
 * socket", "export").
 */
int sockpath_claim(const char *path, const char *what);

/* After bind: remember the socket at path as ours. 0, or -1 (logged). */
int sockpath_made(struct sockpath *sp, const char *path);

/* Remove the socket if it is still the one we made; frees sp's path. */
void sockpath_release(struct sockpath *sp);

#endif
