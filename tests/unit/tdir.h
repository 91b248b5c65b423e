/* SPDX-License-Identifier: ISC */
/*
 * tdir: the unit tests' private temporary directory. A suite's .init makes
 * it (tdir_make), its .fini removes it with everything in it (tdir_remove).
 * Criterion runs each test in a process of its own, so one directory per
 * process is all a test needs.
 */
#ifndef P2PVBD_TEST_TDIR_H
#define P2PVBD_TEST_TDIR_H

/* Make /tmp/p2pvbd-test-NAME-XXXXXX (asserts); returns its path (static, until tdir_remove). */
const char *tdir_make(const char *name);
/* Remove the directory and everything in it (nothing if none was made). */
void tdir_remove(void);

#endif
