/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for uri_parse: URIs come from command lines and files.
 * Invariant: what parses formats, and the formatted URI parses back to an
 * equal struct and is no longer than the input (the format is canonical).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uri.h"
#include "util.h"
#include "vcrypto.h"

static int uri_equal(const struct uri *a, const struct uri *b)
{
	if (memcmp(a->volume_id, b->volume_id, sizeof(a->volume_id)) ||
	    memcmp(a->key, b->key, sizeof(a->key)) ||
	    memcmp(a->secret, b->secret, sizeof(a->secret)) || a->npeers != b->npeers ||
	    a->ntrackers != b->ntrackers)
		return 0;
	for (int i = 0; i < a->npeers; i++)
		if (strcmp(a->peer[i].host, b->peer[i].host) || a->peer[i].port != b->peer[i].port)
			return 0;
	for (int i = 0; i < a->ntrackers; i++)
		if (strcmp(a->tracker[i], b->tracker[i]))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	static struct uri u, v;
	static char out[URI_MAX_LEN + 1], err[256];
	struct uri_peer p;
	int n;

	if (!ready) {
		if (vcrypto_init() < 0)
			abort();
		log_init("fuzz", -1);
		ready = 1;
	}

	(void)uri_parse_hostport((const char *)data, size, &p);

	if (uri_parse((const char *)data, size, &u, err, sizeof(err)) < 0) {
		if (err[0] == '\0')
			abort(); /* every refusal says why */
		return 0;
	}
	if (u.npeers < 0 || u.npeers > URI_MAX_PEERS || u.ntrackers < 0 ||
	    u.ntrackers > URI_MAX_PEERS)
		abort();
	n = uri_format(&u, out, sizeof(out));
	if (n < 0 || (size_t)n > size || (size_t)n != strlen(out))
		abort();
	if (uri_parse(out, (size_t)n, &v, err, sizeof(err)) < 0)
		abort();
	if (!uri_equal(&u, &v))
		abort();
	return 0;
}
