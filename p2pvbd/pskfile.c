/* SPDX-License-Identifier: ISC */
/*
 * pskfile: see pskfile.h.
 */
#include "pskfile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vcrypto.h"

static void set_err(char *err, size_t errlen, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(char *err, size_t errlen, size_t line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (errlen == 0)
		return;
	n = line > 0 ? snprintf(err, errlen, "line %zu: ", line) : 0;
	if (n < 0 || (size_t)n >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* Room for one more entry; keys never stay behind in freed memory (no realloc). */
static void grow(struct pskfile *f, size_t *cap)
{
	struct pskfile_entry *e;

	if (f->n < *cap)
		return;
	*cap = *cap ? 2 * *cap : 4;
	e = xcalloc(*cap, sizeof(*e));
	if (f->n > 0) {
		memcpy(e, f->e, f->n * sizeof(*e));
		vcrypto_wipe(f->e, f->n * sizeof(*e));
	}
	free(f->e);
	f->e = e;
}

/* One line (without its "\n" and "\r") into e; 0, or -1 with err set. */
static int parse_line(const char *p, size_t len, struct pskfile_entry *e, size_t line, char *err,
                      size_t errlen)
{
	const char *colon = memchr(p, ':', len);
	size_t nlen, hlen;

	if (colon == NULL) {
		set_err(err, errlen, line, "expected USERNAME:HEXKEY (no ':')");
		return -1;
	}
	nlen = (size_t)(colon - p);
	hlen = len - nlen - 1;
	if (nlen == 0) {
		set_err(err, errlen, line, "the username is empty");
		return -1;
	}
	if (nlen > PSKFILE_NAME_MAX) {
		set_err(err, errlen, line, "the username is longer than %d bytes",
		        PSKFILE_NAME_MAX);
		return -1;
	}
	for (size_t i = 0; i < nlen; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) {
			set_err(err, errlen, line, "the username has a control character");
			return -1;
		}
	if (hlen % 2 != 0 || hlen / 2 < PSKFILE_KEY_MIN || hlen / 2 > PSKFILE_KEY_MAX) {
		set_err(err, errlen, line,
		        "the key must be %d to %d bytes as an even number of hex digits, "
		        "not %zu digits",
		        PSKFILE_KEY_MIN, PSKFILE_KEY_MAX, hlen);
		return -1;
	}
	if (hex_decode(colon + 1, hlen, e->key, hlen / 2) != 0) {
		vcrypto_wipe(e->key, sizeof(e->key));
		set_err(err, errlen, line, "the key is not hex");
		return -1;
	}
	memcpy(e->name, p, nlen);
	e->name[nlen] = '\0';
	e->keylen = hlen / 2;
	return 0;
}

int pskfile_parse(const char *text, size_t len, struct pskfile *f, char *err, size_t errlen)
{
	size_t cap = 0, line = 0, pos = 0;

	memset(f, 0, sizeof(*f));
	while (pos < len) {
		const char *p = text + pos, *nl = memchr(p, '\n', len - pos);
		size_t llen = nl ? (size_t)(nl - p) : len - pos;
		struct pskfile_entry e;

		pos += llen + (nl != NULL);
		line++;
		if (llen > 0 && p[llen - 1] == '\r')
			llen--;
		if (llen == 0)
			continue;
		if (memchr(p, '\0', llen) != NULL) {
			set_err(err, errlen, line, "a NUL byte (not a text file?)");
			goto fail;
		}
		memset(&e, 0, sizeof(e));
		if (parse_line(p, llen, &e, line, err, errlen) != 0)
			goto fail;
		if (pskfile_find(f, e.name) != NULL) {
			vcrypto_wipe(&e, sizeof(e));
			set_err(err, errlen, line, "the username appears twice");
			goto fail;
		}
		if (f->n == PSKFILE_ENTRIES_MAX) {
			vcrypto_wipe(&e, sizeof(e));
			set_err(err, errlen, line, "more than %d entries", PSKFILE_ENTRIES_MAX);
			goto fail;
		}
		grow(f, &cap);
		f->e[f->n++] = e;
		vcrypto_wipe(&e, sizeof(e));
	}
	if (f->n == 0) {
		set_err(err, errlen, 0, "no USERNAME:HEXKEY line");
		goto fail;
	}
	return 0;
fail:
	pskfile_free(f);
	return -1;
}

const struct pskfile_entry *pskfile_find(const struct pskfile *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->e[i].name, name) == 0)
			return &f->e[i];
	return NULL;
}

void pskfile_free(struct pskfile *f)
{
	if (f->e != NULL) {
		vcrypto_wipe(f->e, f->n * sizeof(*f->e));
		free(f->e);
	}
	f->e = NULL;
	f->n = 0;
}
