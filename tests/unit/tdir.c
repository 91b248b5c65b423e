/* SPDX-License-Identifier: ISC */
/*
 * tdir: the unit tests' temporary directory. See tdir.h.
 */
#include "tdir.h"

#include <criterion/criterion.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tdir[96];

const char *tdir_make(const char *name)
{
	snprintf(tdir, sizeof(tdir), "/tmp/p2pvbd-test-%s-XXXXXX", name);
	cr_assert_not_null(mkdtemp(tdir), "mkdtemp %s", tdir);
	return tdir;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

void tdir_remove(void)
{
	if (tdir[0] == '\0')
		return;
	nftw(tdir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	tdir[0] = '\0';
}
