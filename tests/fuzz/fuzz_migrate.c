/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for migrate_parse: the arguments of the control
 * socket's `migrate` command, whose URI is handed to QEMU. Invariants:
 * nothing crashes; an accepted URI is printable ASCII without blanks, quotes
 * or backslashes, at most MIGRATE_URI_MAX bytes, and names a transport that
 * QEMU only connects with (tcp:, unix:, vsock:, rdma:; never exec:); the time
 * limit is within its bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migrate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[512], err[256];
	struct migrate_req r;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (migrate_parse(s, &r, err, sizeof(err)) != 0)
		return 0;
	size_t n = strlen(r.uri);
	if (n == 0 || n > MIGRATE_URI_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if (r.uri[i] <= ' ' || r.uri[i] > '~' || r.uri[i] == '"' || r.uri[i] == '\\')
			abort();
	if (strncmp(r.uri, "tcp:", 4) != 0 && strncmp(r.uri, "unix:", 5) != 0 &&
	    strncmp(r.uri, "vsock:", 6) != 0 && strncmp(r.uri, "rdma:", 5) != 0)
		abort();
	if (r.timeout_s < 1 || r.timeout_s > MIGRATE_TIMEOUT_MAX_S)
		abort();
	return 0;
}
