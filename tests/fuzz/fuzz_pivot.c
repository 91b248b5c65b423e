/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for pivot_plan_make (QEMU's answers about its block
 * graph, as fetch --qmp reads them). The input is a JSON array [query-block,
 * query-named-block-nodes, x-debug-query-block-graph]. Invariants: nothing
 * crashes, hangs or leaks; a plan is made only with a format node, an nbd
 * node and a new node name of QEMU's length, and an error always says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pivot_plan p;
	char err[512];
	json_t *all = json_loadb((const char *)data, size, 0, NULL);
	static const char *const drives[] = {"disk0", "vd0", "#block143"};

	if (all == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(drives) / sizeof(drives[0]); i++) {
		err[0] = '\0';
		int rc = pivot_plan_make(drives[i], json_array_get(all, 0), json_array_get(all, 1),
		                         json_array_get(all, 2), i == 0 ? "dst.sock" : NULL, &p,
		                         err, sizeof(err));
		if (rc == 0 &&
		    (p.fmt[0] == '\0' || p.nbd[0] == '\0' ||
		     strncmp(p.local, PIVOT_NODE_PREFIX, strlen(PIVOT_NODE_PREFIX)) != 0 ||
		     strlen(p.local) >= PIVOT_NAME_LEN))
			abort();
		if (rc != 0 && (rc != -1 || err[0] == '\0'))
			abort();
	}
	json_decref(all);
	return 0;
}
