/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for sockpath: a path that is not a socket is never removed, a
 * socket in use is refused, a stale one is replaced, and release removes
 * only the socket we made.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockpath.h"
#include "tdir.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "%s", tdir_make("sockpath"));
}

static void teardown(void)
{
	tdir_remove();
}

/* A socket bound at path; listening if listen_too. Returns the fd. */
static int bind_at(const char *path, int listen_too)
{
	struct sockaddr_un su = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	cr_assert_geq(fd, 0);
	snprintf(su.sun_path, sizeof(su.sun_path), "%s", path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&su, sizeof(su)), 0);
	if (listen_too)
		cr_assert_eq(listen(fd, 4), 0);
	return fd;
}

TestSuite(sockpath, .init = setup, .fini = teardown);

Test(sockpath, free_path)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/none", dir);
	cr_assert_eq(sockpath_claim(path, "test"), 0);
}

Test(sockpath, regular_file_is_refused_and_kept)
{
	char path[128];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "x\n", 2), 2);
	close(fd);
	cr_assert_eq(sockpath_claim(path, "test"), -1);
	cr_assert_eq(stat(path, &st), 0, "the file was removed");
	cr_assert_eq(st.st_size, 2);
}

Test(sockpath, directory_is_refused)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/d", dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(sockpath_claim(path, "test"), -1);
	cr_assert_eq(stat(path, &st), 0);
}

Test(sockpath, live_socket_is_refused_stale_is_replaced)
{
	char path[128];
	struct stat st;
	int fd;

	snprintf(path, sizeof(path), "%s/s", dir);
	fd = bind_at(path, 1);
	cr_assert_eq(sockpath_claim(path, "test"), -1, "a listening socket was taken over");
	cr_assert_eq(lstat(path, &st), 0);
	close(fd); /* the socket file stays: now stale */
	cr_assert_eq(lstat(path, &st), 0);
	cr_assert_eq(sockpath_claim(path, "test"), 0);
	cr_assert_eq(lstat(path, &st), -1, "the stale socket is still there");
}

Test(sockpath, release_removes_only_our_socket)
{
	char path[128];
	struct sockpath sp = {0};
	struct stat st;
	int fd, fd2;

	snprintf(path, sizeof(path), "%s/s", dir);
	fd = bind_at(path, 1);
	cr_assert_eq(sockpath_made(&sp, path), 0);
	/* Another process replaced it (after ours died, say): release must leave it. */
	cr_assert_eq(unlink(path), 0);
	fd2 = bind_at(path, 1);
	sockpath_release(&sp);
	cr_assert_eq(lstat(path, &st), 0, "release removed another process's socket");
	cr_assert_null(sp.path);
	close(fd2);
	close(fd);

	/* Our own socket is removed. */
	cr_assert_eq(unlink(path), 0);
	fd = bind_at(path, 1);
	cr_assert_eq(sockpath_made(&sp, path), 0);
	sockpath_release(&sp);
	cr_assert_eq(lstat(path, &st), -1, "release left our socket");
	close(fd);
	sockpath_release(&sp); /* twice: harmless */
}
