/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for parse: sizes, rates, durations and HOST:PORT come
 * from command lines, unit files and URI files. Invariants: nothing crashes;
 * what a size parses to is what its digits times its unit say; a rate is
 * never 0; a parsed host has no ':' unless it was bracketed, and fits.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char s[64], host[32];
	uint64_t v;
	uint16_t port;

	if (size >= sizeof(s))
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (parse_size(s, &v) == 0 && strspn(s, "0123456789") == strlen(s) &&
	    strtoull(s, NULL, 10) != v)
		abort();
	if (parse_rate(s, &v) == 0 && v == 0)
		abort();
	if (parse_duration(s, 0, UINT64_MAX, &v) == 0 && s[0] == '0' && s[1] == '\0' && v != 0)
		abort();
	if (parse_uint(s, 0, UINT64_MAX, &v) == 0 && (s[0] < '0' || s[0] > '9'))
		abort();
	if (parse_hostport(s, 1, host, sizeof(host), &port) == 0) {
		if (strlen(host) >= sizeof(host) || host[0] == '\0')
			abort();
		if (strchr(host, ':') != NULL && s[0] != '[')
			abort();
	}
	return 0;
}
