/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for qmp_parse_line (every line QEMU sends). Invariants:
 * nothing crashes or leaks; a line is a reply (0) or an event (1) exactly
 * when it is a JSON object with "return"/"error" or a string "event", and
 * the object is returned only then.
 */
#include <stdint.h>
#include <stdlib.h>

#include "qmp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	json_t *o;
	int kind = qmp_parse_line((const char *)data, size, &o, err, sizeof(err));

	if ((kind < 0) != (o == NULL))
		abort();
	if (kind == 1 && !json_is_string(json_object_get(o, "event")))
		abort();
	if (kind == 0 && json_object_get(o, "return") == NULL &&
	    !json_is_object(json_object_get(o, "error")))
		abort();
	json_decref(o);
	return 0;
}
