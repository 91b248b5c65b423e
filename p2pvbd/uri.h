/* SPDX-License-Identifier: ISC */
/*
 * uri: the volume URI, the capability a destination is given.
 *
 *   p2pvbd://<volume-id>?key=<source public key>&secret=<join
 * secret>&peer=<host:port>[&peer=...][&tracker=<url>...]
 *
 * volume-id: 32 hex digits; key and secret: 64 hex digits each. host is a
 * name, an IPv4 address or an [IPv6] address in brackets. Pure code.
 */
#ifndef P2PVBD_URI_H
#define P2PVBD_URI_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "vcrypto.h"

#define URI_SCHEME    "p2pvbd://"
#define URI_MAX_PEERS 16
#define URI_MAX_LEN   4096

struct uri_peer {
	char host[256]; /* without brackets */
	uint16_t port;
};

struct uri {
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint8_t key[VCRYPTO_PK_LEN];
	uint8_t secret[VCRYPTO_SECRET_LEN];
	struct uri_peer peer[URI_MAX_PEERS];
	int npeers;
	char tracker[URI_MAX_PEERS][512];
	int ntrackers;
};

/*
 * Parse s (len bytes, need not be NUL-terminated). On error returns -1 and
 * writes a one-line reason to err (errlen bytes). Strict: unknown or
 * repeated key=/secret= parameters, bad hex, bad ports are errors. key= and
 * secret= are required; peer= is optional here (a tracker may supply peers).
 */
int uri_parse(const char *s, size_t len, struct uri *u, char *err, size_t errlen);

/* Format u into out; returns the length, or -1 if cap is too small. */
int uri_format(const struct uri *u, char *out, size_t cap);

/* Parse "host:port" or "[v6]:port" into p; 0 or -1. */
int uri_parse_hostport(const char *s, size_t len, struct uri_peer *p);

#endif
