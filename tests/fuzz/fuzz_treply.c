/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for treply_parse: a tracker's replies reach p2pvbd from
 * the network. Invariants: a refusal says why; an accepted reply keeps its
 * bounds (peer count, non-zero ports, address families) and every pointer
 * it returns lies inside the input.
 */
#include <stdint.h>
#include <stdlib.h>

#include "treply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct treply r;
	const char *why = NULL;

	if (treply_parse(data, size, &r, &why) != 0) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (r.npeers < 0 || r.npeers > TREPLY_MAX_PEERS)
		abort();
	for (int i = 0; i < r.npeers; i++)
		if (r.peers[i].port == 0 || (r.peers[i].family != 4 && r.peers[i].family != 6))
			abort();
	if (r.failure != NULL && ((const uint8_t *)r.failure < data ||
	                          (const uint8_t *)r.failure + r.failure_len > data + size))
		abort();
	if (r.receipts != NULL && (r.receipts < data || r.receipts + r.receipts_len > data + size))
		abort();
	if (r.interval < -1 || r.min_interval < -1)
		abort();
	return 0;
}
