/* SPDX-License-Identifier: ISC */
/*
 * parse: command-line syntaxes. See parse.h.
 */
#include "parse.h"

#include <string.h>
#include <strings.h>

/* Digits of s into *v, stopping at the first non-digit (*end). -1 on none or overflow. */
static int digits(const char *s, uint64_t *v, const char **end)
{
	uint64_t n = 0;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	if (p == s)
		return -1;
	*v = n;
	*end = p;
	return 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v;

	if (s == NULL || digits(s, &v, &end) != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* The multiplier of a binary size suffix "", K, M, G, T (+ "iB" or "B"); 0 if not one. */
static uint64_t size_suffix(const char *s)
{
	static const char units[] = "KMGT";
	const char *u;
	uint64_t mult;

	if (*s == '\0')
		return 1;
	u = strchr(units, *s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s);
	if (u == NULL || *u == '\0')
		return 0;
	mult = 1ull << (10 * (u - units + 1));
	s++;
	/* A lower-case b would mean bits ("10Mb"): refused as ambiguous. */
	if (*s == '\0' || strcmp(s, "iB") == 0 || strcmp(s, "B") == 0)
		return mult;
	return 0;
}

int parse_size(const char *s, uint64_t *out)
{
	const char *end;
	uint64_t v, mult;

	if (s == NULL || digits(s, &v, &end) != 0)
		return -1;
	mult = size_suffix(end);
	if (mult == 0 || v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

int parse_rate(const char *s, uint64_t *out)
{
	static const struct {
		const char *name;
		uint64_t bits;
	} bit_units[] = {{"bit", 1}, {"kbit", 1000}, {"mbit", 1000000}, {"gbit", 1000000000}};
	char unit[16];
	const char *end;
	size_t n;
	uint64_t v, mult;

	if (s == NULL || digits(s, &v, &end) != 0)
		return -1;
	n = strlen(end);
	if (n >= 2 && strcmp(end + n - 2, "/s") == 0)
		n -= 2;
	if (n >= sizeof(unit))
		return -1;
	memcpy(unit, end, n);
	unit[n] = '\0';
	for (size_t i = 0; i < sizeof(bit_units) / sizeof(bit_units[0]); i++) {
		if (strcasecmp(unit, bit_units[i].name) != 0)
			continue;
		if (v > UINT64_MAX / bit_units[i].bits || v * bit_units[i].bits < 8)
			return -1; /* overflow, or less than a byte per second */
		*out = v * bit_units[i].bits / 8;
		return 0;
	}
	mult = size_suffix(unit);
	if (mult == 0 || v == 0 || v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

int parse_duration(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	const char *end;
	uint64_t v, mult;

	if (s == NULL || digits(s, &v, &end) != 0)
		return -1;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60;
	else if (strcmp(end, "h") == 0)
		mult = 3600;
	else if (strcmp(end, "d") == 0)
		mult = 86400;
	else
		return -1;
	if (v > UINT64_MAX / mult || v * mult < min || v * mult > max)
		return -1;
	*out = v * mult;
	return 0;
}

int parse_hostport(const char *s, int allow_port0, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hlen;
	uint64_t p;

	if (s == NULL)
		return -1;
	colon = strrchr(s, ':');
	if (colon == NULL || parse_uint(colon + 1, allow_port0 ? 0 : 1, 65535, &p) != 0)
		return -1;
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		h++;
		hlen -= 2;
		if (memchr(h, ':', hlen) == NULL)
			return -1; /* brackets are for IPv6 addresses only */
	} else if (memchr(s, ':', hlen) != NULL || memchr(s, '[', hlen) || memchr(s, ']', hlen)) {
		return -1; /* an unbracketed IPv6 address, or stray brackets */
	}
	if (hlen == 0 || hlen >= hostlen || memchr(h, ' ', hlen) != NULL)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}
