/* SPDX-License-Identifier: ISC */
/*
 * pskfile: the pre-shared keys of the NBD export's TLS (--tls-psk FILE), in
 * the format nbdkit, QEMU and psktool(1) use: one "USERNAME:HEXKEY" line per
 * client. Pure: it parses bytes already read (nbd_tls.c reads the file), so
 * that the unit tests and the fuzzer call it directly.
 *
 * Rules (stricter than GnuTLS, so that a mistake is seen at start, not at
 * the first handshake): lines end with "\n" (a "\r" before it is dropped);
 * empty lines are skipped; a username is 1..PSKFILE_NAME_MAX bytes without
 * ':' or control characters, and appears once; a key is an even number of
 * hex digits, PSKFILE_KEY_MIN..PSKFILE_KEY_MAX bytes; at least one entry,
 * at most PSKFILE_ENTRIES_MAX.
 */
#ifndef P2PVBD_PSKFILE_H
#define P2PVBD_PSKFILE_H

#include <stddef.h>
#include <stdint.h>

/* Usernames: TLS allows longer identities; no client needs more than this. */
#define PSKFILE_NAME_MAX 128
/* Keys: 128 bits at least (psktool makes 256 by default), 512 bytes at most. */
#define PSKFILE_KEY_MIN 16
#define PSKFILE_KEY_MAX 512
/* Entries: a file is a short list of clients; bounds the memory a file can take. */
#define PSKFILE_ENTRIES_MAX 1024

struct pskfile_entry {
	char name[PSKFILE_NAME_MAX + 1]; /* NUL-terminated */
	uint8_t key[PSKFILE_KEY_MAX];
	size_t keylen;
};

struct pskfile {
	struct pskfile_entry *e; /* owned; keys wiped by pskfile_free */
	size_t n;
};

/*
 * Parse len bytes of text into f (zeroed first). 0, or -1 with a one-line
 * reason in err ("line 3: the key is not hex"); f is then empty.
 */
int pskfile_parse(const char *text, size_t len, struct pskfile *f, char *err, size_t errlen);

/* The entry of name, or NULL. */
const struct pskfile_entry *pskfile_find(const struct pskfile *f, const char *name);

/* Wipe the keys and free. Safe on a zeroed struct. */
void pskfile_free(struct pskfile *f);

#endif
