/* SPDX-License-Identifier: ISC */
/*
 * store_int.h: private to the store's files (store.c: chunks, the pending
 * list and commits; store_file.c: the state file's format). Not for other
 * modules: they use store.h.
 */
#ifndef P2PVBD_STORE_INT_H
#define P2PVBD_STORE_INT_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#include "store.h"

#define STORE_REC_LEN   8
#define STORE_STATE_MAX STORE_LOCAL
/* The generation shares a u64 with the 8-bit state. */
#define STORE_GEN_MAX ((UINT64_C(1) << 56) - 1)

static inline void store_put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline uint64_t store_get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

/* ---- store_file.c ---- */

/* Where chunk's content id lies in the state file: after all the records. */
uint64_t store_id_offset(const struct store *s, uint32_t chunk);
/* Check the header and records of the open state file against s, and load them. 0 or -1. */
int store_state_load(struct store *s);
/* Create the state file, every chunk MISSING (temporary name, renamed). 0 or -1. */
int store_state_create(struct store *s);
/* Write chunk's record rec durably (what: "missing", "local", for the log). 0 or -1. */
int store_state_write_rec(const struct store *s, uint32_t chunk, uint64_t rec, const char *what);

#endif
