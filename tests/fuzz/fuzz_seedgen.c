/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for seedgen_decode (the seed's generation record, read
 * back at every start). Invariants: nothing crashes; what decodes encodes
 * back to the same bytes; a decoded generation fits 56 bits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seedgen.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seedgen_info info;
	uint8_t again[SEEDGEN_LEN];
	const char *why;

	if (seedgen_decode(data, size, &info, &why) != 0)
		return 0;
	if (info.reserved >> 56 != 0 || info.root_gen > info.reserved)
		abort();
	seedgen_encode(again, &info);
	if (memcmp(again, data, SEEDGEN_LEN) != 0)
		abort();
	return 0;
}
