/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for pskfile: the --tls-psk FILE of the NBD export (a
 * file an operator hands us, possibly the wrong one). Invariants: nothing
 * crashes; a parsed file has 1..PSKFILE_ENTRIES_MAX entries with non-empty,
 * distinct, NUL-terminated usernames without ':' and keys within bounds,
 * each of which pskfile_find finds; a refused file leaves nothing behind
 * and says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pskfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pskfile f;
	char err[256];

	err[0] = '\0';
	if (pskfile_parse((const char *)data, size, &f, err, sizeof(err)) != 0) {
		if (f.n != 0 || f.e != NULL || err[0] == '\0')
			abort();
		return 0;
	}
	if (f.n == 0 || f.n > PSKFILE_ENTRIES_MAX)
		abort();
	for (size_t i = 0; i < f.n; i++) {
		const struct pskfile_entry *e = &f.e[i];
		size_t nlen = strnlen(e->name, sizeof(e->name));

		if (nlen == 0 || nlen > PSKFILE_NAME_MAX || strchr(e->name, ':') != NULL)
			abort();
		if (e->keylen < PSKFILE_KEY_MIN || e->keylen > PSKFILE_KEY_MAX)
			abort();
		if (pskfile_find(&f, e->name) != e)
			abort();
	}
	pskfile_free(&f);
	return 0;
}
