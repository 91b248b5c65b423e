/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for pskfile: the --tls-psk FILE format (USERNAME:HEXKEY lines,
 * as psktool writes them), and every malformed file refused with a reason
 * that names the line.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pskfile.h"

/* 32 bytes, as psktool makes by default. */
#define KEY64 "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"

static void bad(const char *text, size_t len, const char *want)
{
	struct pskfile f;
	char err[200] = "";

	cr_assert_eq(pskfile_parse(text, len, &f, err, sizeof(err)), -1, "accepted: %.*s", (int)len,
	             text);
	cr_assert_eq(f.n, 0);
	cr_assert_null(f.e);
	cr_assert(strstr(err, want) != NULL, "error \"%s\" does not say \"%s\"", err, want);
}

#define BAD(text, want) bad(text, sizeof(text) - 1, want)

Test(pskfile, psktool_file)
{
	static const char text[] = "alice:" KEY64 "\nbob:" KEY64 "\n";
	struct pskfile f;
	char err[200];
	const struct pskfile_entry *e;

	cr_assert_eq(pskfile_parse(text, sizeof(text) - 1, &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(f.n, 2);
	e = pskfile_find(&f, "bob");
	cr_assert_not_null(e);
	cr_assert_eq(e->keylen, 32);
	cr_assert_eq(e->key[0], 0x00);
	cr_assert_eq(e->key[31], 0xff);
	cr_assert_null(pskfile_find(&f, "carol"));
	cr_assert_null(pskfile_find(&f, "alic"));
	pskfile_free(&f);
	cr_assert_eq(f.n, 0);
	pskfile_free(&f); /* twice is fine */
}

Test(pskfile, crlf_blank_lines_and_no_final_newline)
{
	static const char text[] = "\n\r\nalice:" KEY64 "\r\n\nbob:" KEY64;
	struct pskfile f;
	char err[200];

	cr_assert_eq(pskfile_parse(text, sizeof(text) - 1, &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(f.n, 2);
	cr_assert_not_null(pskfile_find(&f, "alice"));
	cr_assert_not_null(pskfile_find(&f, "bob"));
	pskfile_free(&f);
}

Test(pskfile, key_after_first_colon)
{
	/* The username ends at the first ':'; a second one makes the key not hex. */
	BAD("a:b:" KEY64 "\n", "line 1: the key");
}

Test(pskfile, malformed)
{
	BAD("", "no USERNAME:HEXKEY line");
	BAD("\n\n\r\n", "no USERNAME:HEXKEY line");
	BAD("alice " KEY64 "\n", "line 1: expected USERNAME:HEXKEY");
	BAD("\nalice:" KEY64 "\nbob\n", "line 3: expected USERNAME:HEXKEY");
	BAD(":" KEY64 "\n", "the username is empty");
	BAD("al\tice:" KEY64 "\n", "control character");
	BAD("al\x7f"
	    "ice:" KEY64 "\n",
	    "control character");
	BAD("alice:\n", "the key must be");
	BAD("alice:0\n", "the key must be");
	BAD("alice:" KEY64 "0\n", "the key must be");                     /* odd */
	BAD("alice:00112233445566778899aabbccddee\n", "the key must be"); /* 15 bytes */
	BAD("alice:00112233445566778899aabbccddeeg0\n", "the key is not hex");
	BAD("alice: 00112233445566778899aabbccddeef\n", "the key is not hex");
	BAD("alice:" KEY64 "\nalice:" KEY64 "\n", "line 2: the username appears twice");
	bad("alice:" KEY64 "\0\n", sizeof("alice:" KEY64 "\0\n") - 1, "NUL");
}

Test(pskfile, limits)
{
	char name[PSKFILE_NAME_MAX + 2], text[1200];
	struct pskfile f;
	char err[200];

	memset(name, 'n', sizeof(name));
	name[PSKFILE_NAME_MAX] = '\0';
	snprintf(text, sizeof(text), "%s:%s\n", name, KEY64);
	cr_assert_eq(pskfile_parse(text, strlen(text), &f, err, sizeof(err)), 0, "%s", err);
	pskfile_free(&f);
	name[PSKFILE_NAME_MAX] = 'n';
	name[PSKFILE_NAME_MAX + 1] = '\0';
	snprintf(text, sizeof(text), "%s:%s\n", name, KEY64);
	bad(text, strlen(text), "longer than");

	/* The longest key, then one byte more. */
	memcpy(text, "k:", 2);
	memset(text + 2, 'a', 2 * PSKFILE_KEY_MAX);
	cr_assert_eq(pskfile_parse(text, 2 + 2 * PSKFILE_KEY_MAX, &f, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(f.e[0].keylen, PSKFILE_KEY_MAX);
	pskfile_free(&f);
	memset(text + 2, 'a', 2 * PSKFILE_KEY_MAX + 2);
	bad(text, 2 + 2 * PSKFILE_KEY_MAX + 2, "the key must be");
}

Test(pskfile, too_many_entries)
{
	size_t cap = (PSKFILE_ENTRIES_MAX + 1) * 80, len = 0;
	char *text = malloc(cap);
	struct pskfile f;
	char err[200];

	for (int i = 0; i < PSKFILE_ENTRIES_MAX; i++)
		len += (size_t)snprintf(text + len, cap - len, "u%d:%s\n", i, KEY64);
	cr_assert_eq(pskfile_parse(text, len, &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(f.n, PSKFILE_ENTRIES_MAX);
	cr_assert_not_null(pskfile_find(&f, "u1023"));
	pskfile_free(&f);
	len += (size_t)snprintf(text + len, cap - len, "one-more:%s\n", KEY64);
	bad(text, len, "more than");
	free(text);
}

Test(pskfile, small_error_buffer)
{
	struct pskfile f;
	char err[8];

	cr_assert_eq(pskfile_parse("x", 1, &f, err, sizeof(err)), -1);
	cr_assert_eq(strlen(err), sizeof(err) - 1);
	cr_assert_eq(pskfile_parse("x", 1, &f, NULL, 0), -1);
}
