/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for what seed --qmp reads out of QEMU's answers
 * (vmattach_find_drive on query-block, vmattach_find_job on
 * query-block-jobs), after jansson parsed the bytes. Invariants: nothing
 * crashes or leaks; a drive found has a top node and a size above 0; every
 * string copied out is NUL-terminated within its field.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmattach.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	json_error_t je;
	struct vmattach_drive d;
	struct vmattach_jobinfo ji;
	json_t *v = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);

	if (v == NULL)
		return 0;
	if (vmattach_find_drive(v, "disk0", &d, err, sizeof(err)) == 0) {
		if (d.node[0] == '\0' || d.size == 0 || memchr(d.node, 0, sizeof(d.node)) == NULL ||
		    memchr(d.format, 0, sizeof(d.format)) == NULL)
			abort();
	} else if (memchr(err, 0, sizeof(err)) == NULL) {
		abort();
	}
	if (vmattach_find_job(v, "p2pvbd-00000000", &ji, err, sizeof(err)) == 0 &&
	    (memchr(ji.status, 0, sizeof(ji.status)) == NULL ||
	     memchr(ji.error, 0, sizeof(ji.error)) == NULL))
		abort();
	json_decref(v);
	return 0;
}
