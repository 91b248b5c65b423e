/* SPDX-License-Identifier: ISC */
/*
 * sockpath: claiming and releasing Unix socket paths. See sockpath.h.
 */
#include "sockpath.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util.h"

/* 1 if a process accepts connections on the socket at path, 0 if not, -1 on error. */
static int socket_in_use(const char *path)
{
	struct sockaddr_un su;
	int fd, rc;

	memset(&su, 0, sizeof(su));
	if (strlen(path) >= sizeof(su.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	su.sun_family = AF_UNIX;
	memcpy(su.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	/* A listener answers at once (or EAGAIN: its backlog is full, still in use). */
	if (connect(fd, (struct sockaddr *)&su, sizeof(su)) == 0 || errno == EAGAIN ||
	    errno == EINPROGRESS)
		rc = 1;
	else if (errno == ECONNREFUSED)
		rc = 0; /* a socket file nobody listens on: left by a process that died */
	else
		rc = -1;
	close(fd);
	return rc;
}

int sockpath_claim(const char *path, const char *what)
{
	struct stat st;
	int in_use;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		log_error("%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s %s: the path exists and is not a socket; refusing to replace it "
		          "(remove it or choose another path)",
		          what, path);
		return -1;
	}
	in_use = socket_in_use(path);
	if (in_use < 0) {
		log_error("%s %s: cannot check the socket there: %s", what, path, strerror(errno));
		return -1;
	}
	if (in_use) {
		log_error("%s %s: in use (another process accepts connections on it); stop it or "
		          "choose another path",
		          what, path);
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT) {
		log_error("%s %s: cannot remove the stale socket: %s", what, path, strerror(errno));
		return -1;
	}
	log_debug("%s %s: removed a stale socket", what, path);
	return 0;
}

int sockpath_made(struct sockpath *sp, const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0) {
		log_error("%s: the socket just made is not there: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s: the socket just made was replaced by another file", path);
		return -1;
	}
	sp->path = xstrdup(path);
	sp->dev = st.st_dev;
	sp->ino = st.st_ino;
	return 0;
}

void sockpath_release(struct sockpath *sp)
{
	struct stat st;

	if (sp->path == NULL)
		return;
	if (lstat(sp->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sp->dev &&
	    st.st_ino == sp->ino)
		unlink(sp->path);
	free(sp->path);
	sp->path = NULL;
}
