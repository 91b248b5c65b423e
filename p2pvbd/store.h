/* SPDX-License-Identifier: ISC */
/*
 * store: the output image plus its crash-safe per-chunk state file.
 *
 * Rule: a chunk is marked present in the state file only after its data is
 * durable in the image. store_put() writes data (not yet durable);
 * store_commit() makes all data written so far durable (fdatasync), then
 * writes and syncs the state records of those chunks. A crash between the
 * two loses only the marks, never leaves a mark without its data.
 *
 * State file (PATH.p2pvbd-state, format in PROTOCOL.md "State file"): a
 * 64-byte header naming the volume and the newest root generation verified
 * for it, then one little-endian u64 record per chunk, (generation << 8) |
 * state, one aligned 8-byte write each; then one content id per chunk.
 *
 * Identity is content (DESIGN rule 7): a chunk held PRESENT or ZERO is the
 * chunk of an entry only if its content id, the first STORE_ID_LEN bytes of
 * the hash it was verified against, equals that entry's (store_holds). The
 * generation in a record says when the bytes were written; it is never
 * enough to trust them.
 */
#ifndef P2PVBD_STORE_H
#define P2PVBD_STORE_H

#include <stdint.h>
#include <stddef.h>

#include "manifest.h"

#define STORE_STATE_SUFFIX ".p2pvbd-state"
#define STORE_STATE_MAGIC  "P2PVSTA1"
#define STORE_HDR_LEN      64
/* Bytes of a chunk's BLAKE2b-256 hash kept as its content id. */
#define STORE_ID_LEN 16

enum store_state {
	STORE_MISSING = 0, /* not here (or an older generation) */
	STORE_PRESENT = 1, /* verified and durable at gen */
	STORE_ZERO = 2,    /* all zero at gen: a hole in the image */
	STORE_LOCAL = 3,   /* written by the local VM: never overwritten, never served */
};

struct store_batch;
struct imglock;

struct store {
	/* QEMU-style exclusive lock on the image (owned), or NULL (no OFD locks here). */
	struct imglock *lock;
	int img_fd;
	int state_fd;
	char *img_path;   /* owned */
	char *state_path; /* owned */
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint64_t image_size;
	uint32_t chunk_size;
	uint32_t chunk_count;
	uint64_t *rec; /* chunk_count records as in the file: (gen << 8) | state */
	/* Content id of each chunk's bytes in the image (pending ones too); all
	 * zero where none is known (MISSING, LOCAL, or being rewritten). */
	uint8_t (*id)[STORE_ID_LEN];
	uint64_t root_gen; /* newest root generation verified for the volume (kept in the header) */
	int root_dirty;    /* root_gen was written: the state file is synced again at close */
	uint32_t *pending; /* chunks written by store_put and not yet committed */
	uint8_t *pending_state;
	uint64_t *pending_gen;               /* generation each pending chunk will be marked with */
	uint8_t (*pending_id)[STORE_ID_LEN]; /* and its content id */
	uint32_t npending, pending_cap;
	uint64_t pending_bytes;       /* data bytes in pending chunks */
	uint64_t present_bytes;       /* bytes of chunks PRESENT, ZERO or LOCAL */
	struct store_batch *inflight; /* the commit between begin and end, or NULL */
	int unlocked;                 /* store_unlock gave the lock away */
};

/*
 * What other modules may read of a store (its fields are the store's own:
 * struct store is visible only so that it can be embedded).
 */
uint32_t store_npending(const struct store *s);      /* chunks written, not yet committed */
uint64_t store_pending_bytes(const struct store *s); /* their data bytes */
uint64_t store_present_bytes(const struct store *s); /* bytes of PRESENT, ZERO or LOCAL chunks */

/*
 * fetch --qmp: give the image lock up so that QEMU can open the image
 * itself (the store still writes it until QEMU has taken it over), and take
 * it back if QEMU did not. store_relock: 0, or -1 if someone else holds a
 * conflicting lock now (logged).
 */
void store_unlock(struct store *s);
int store_relock(struct store *s);

#define STORE_F_CREATE 0x1 /* create the image if it does not exist */
#define STORE_F_FORCE  0x2 /* take over an existing image that has no state file */

/*
 * Open or create the image at path (sized to image_size, sparse) and its
 * state file. An existing state file must name the same volume id, size and
 * chunk size, else -1 with a message saying which differs. An existing image
 * without a state file is refused unless STORE_F_FORCE. 0 or -1; on error
 * nothing is left open.
 */
int store_open(struct store *s, const char *path, const uint8_t volume_id[MANIFEST_ID_LEN],
               uint64_t image_size, uint32_t chunk_size, int flags);
/* The same with the state file at sidecar + STORE_STATE_SUFFIX (--state-dir). */
int store_open_at(struct store *s, const char *path, const char *sidecar,
                  const uint8_t volume_id[MANIFEST_ID_LEN], uint64_t image_size,
                  uint32_t chunk_size, int flags);
void store_close(struct store *s); /* commits pending chunks first */

static inline enum store_state store_state_of(const struct store *s, uint32_t chunk)
{
	return (enum store_state)(s->rec[chunk] & 0xff);
}
static inline uint64_t store_gen_of(const struct store *s, uint32_t chunk)
{
	return s->rec[chunk] >> 8;
}
uint32_t store_chunk_len(const struct store *s, uint32_t chunk);

/*
 * 1 if the image holds, for chunk, the bytes whose BLAKE2b-256 hash is hash
 * (PRESENT or ZERO, committed or pending, with that content id); else 0.
 */
int store_holds(const struct store *s, uint32_t chunk, const uint8_t hash[VCRYPTO_HASH_LEN]);
/*
 * A held chunk (store_holds) is the chunk of an entry of generation gen:
 * serve it at gen. Only the mirror changes; the record follows with the
 * chunk's next commit (a restart compares content ids, not generations).
 */
void store_relabel(struct store *s, uint32_t chunk, uint64_t gen);

/*
 * The newest root generation this destination verified for the volume
 * (0 if none), and raising it: a destination never goes back to an older
 * root, across restarts too. store_note_root writes the header (synced with
 * the next commit or at close); 0 or -1.
 */
uint64_t store_root_gen(const struct store *s);
int store_note_root(struct store *s, uint64_t gen);
/*
 * The same from the state file at sidecar + STORE_STATE_SUFFIX without
 * opening the store: 0 with *gen set (0 if there is no state file or it
 * names another volume), -1 if it cannot be read.
 */
int store_peek_root_gen(const char *sidecar, const uint8_t volume_id[MANIFEST_ID_LEN],
                        uint64_t *gen);

/*
 * Write a verified chunk's data (len = chunk length); hash is the entry's
 * hash it was verified against. Durable only after store_commit.
 */
int store_put(struct store *s, uint32_t chunk, uint64_t gen, const uint8_t *hash, const void *data,
              size_t len);
/*
 * store_put in three steps, so that the data can be written by a worker
 * thread: store_put_begin (loop thread: checks; clears a committed mark
 * first), store_write (any thread: only writes the data), store_put_end (loop
 * thread: the chunk joins the pending list).
 */
int store_put_begin(struct store *s, uint32_t chunk, uint64_t gen, size_t len);
int store_write(const struct store *s, uint32_t chunk, const void *data, size_t len);
void store_put_end(struct store *s, uint32_t chunk, uint64_t gen, const uint8_t *hash);

/*
 * Record a zero chunk (hash: its entry's, that of the zero bytes): punches a
 * hole if the range may hold data. Pending like store_put.
 */
int store_put_zero(struct store *s, uint32_t chunk, uint64_t gen, const uint8_t *hash);
/* Make pending chunks durable and mark them. Returns the number marked, or -1. */
int store_commit(struct store *s);
/*
 * store_commit in three steps, so that the syncs can run on a worker thread:
 * begin (loop thread) takes the pending chunks (NULL if none); sync (any
 * thread; touches only the files and b) makes the data durable and then
 * writes and syncs the records; end (loop thread) updates the in-memory
 * state, frees b and returns the number marked or -1. One batch at a time.
 * Chunks put while a batch is syncing belong to the next batch; a chunk of
 * the batch that is put again, zeroed, made local or forgotten meanwhile is
 * withdrawn from it: its record is not written, or, if the worker wrote it
 * already, is overwritten durably before the chunk's bytes change.
 */
struct store_batch *store_commit_begin(struct store *s);
int store_commit_sync(const struct store *s, struct store_batch *b);
int store_commit_end(struct store *s, struct store_batch *b, int sync_result);

/* fdatasync the image only (any thread). 0 or -1. */
int store_sync_data(const struct store *s);

/* Mark a chunk missing (e.g. a newer generation exists); durable at once. */
int store_forget(struct store *s, uint32_t chunk);

/*
 * The local VM wrote (part of) chunk: it becomes LOCAL, never again
 * overwritten by fetched data nor served to peers. A PRESENT or ZERO chunk
 * is marked durably at once (before its bytes change); a MISSING one joins
 * the pending list. 0 or -1.
 */
int store_mark_local(struct store *s, uint32_t chunk);
/* Write or zero bytes anywhere in the image (the local VM's writes). 0 or -1. */
int store_write_range(const struct store *s, uint64_t off, const void *data, size_t len);
/* punch != 0: deallocate (TRIM, WRITE_ZEROES without NO_HOLE); else allocate zeros. */
int store_zero_range(const struct store *s, uint64_t off, uint64_t len, int punch);

/* Read bytes of the image (for serving peers and NBD). 0 or -1. */
int store_read(struct store *s, uint64_t offset, void *buf, size_t len);

/* Number of chunks in each state. */
void store_counts(const struct store *s, uint32_t counts[4]);

#endif
