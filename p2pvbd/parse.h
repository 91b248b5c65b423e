/* SPDX-License-Identifier: ISC */
/*
 * parse: the one parser of each command-line syntax, shared by every program
 * (p2pvbd, p2pvbd-tracker, the test tools). Each takes a NUL-terminated
 * string, accepts exactly its syntax (no sign, no spaces, nothing left over)
 * and returns 0, or -1 with *out untouched.
 */
#ifndef P2PVBD_PARSE_H
#define P2PVBD_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits only, min <= value <= max. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * A size in bytes: digits with an optional binary suffix K, M, G or T
 * (1024-based, either case), which may be followed by "iB" or "B"
 * (exactly so: "Mb" would be megabits): "65536", "256K", "4MiB", "1g".
 */
int parse_size(const char *s, uint64_t *out);

/*
 * A rate in bytes per second: a size as above ("100M" is 100 MiB/s), or a
 * bit rate with a decimal prefix, "kbit", "Mbit" or "Gbit" (either case):
 * "100Mbit" is 12500000 bytes/s. Either may end in "/s". Never 0.
 */
int parse_rate(const char *s, uint64_t *out);

/*
 * A duration in seconds: digits with an optional unit s, m, h or d
 * ("30", "30s", "5m", "2h"); min <= value <= max seconds.
 */
int parse_duration(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * HOST:PORT or [IPV6]:PORT to listen on or dial. host (hostlen bytes)
 * receives the host without brackets; port 0 is accepted only with
 * allow_port0 (listening: "any free port"). An unbracketed IPv6 address
 * is ambiguous and refused.
 */
int parse_hostport(const char *s, int allow_port0, char *host, size_t hostlen, uint16_t *port);

#endif
