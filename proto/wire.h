/* SPDX-License-Identifier: ISC */
/*
 * wire: the p2pvbd peer protocol codec, version 1.
 *
 * Pure code: no I/O, no allocation, no globals. Every function takes bytes
 * and returns structured values (or the reverse); the connection code in
 * p2pvbd/peer.c moves the bytes. proto/PROTOCOL.md describes every byte;
 * this file and that document must agree.
 *
 * All integers on the wire are big-endian (network byte order).
 */
#ifndef P2PVBD_WIRE_H
#define P2PVBD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_VERSION 1

/* Handshake records (plaintext, before keys are agreed). */
#define WIRE_HELLO_MAGIC  "P2PVBD1\n" /* 8 bytes, no NUL on the wire */
#define WIRE_REFUSE_MAGIC "P2PVBD!\n" /* a refusal instead of a hello */
#define WIRE_MAGIC_LEN    8
#define WIRE_HELLO_LEN    96

#define WIRE_ID_LEN   16 /* volume id */
#define WIRE_KEY_LEN  32 /* Ed25519 / X25519 public keys */
#define WIRE_SIG_LEN  64 /* Ed25519 signature */
#define WIRE_HASH_LEN 32 /* BLAKE2b-256 */

/*
 * Encrypted frames: a 4-byte length, then that many bytes of ciphertext
 * (plaintext message + 16-byte Poly1305 tag).
 */
#define WIRE_FRAME_HDR_LEN 4
#define WIRE_TAG_LEN       16

/*
 * Largest piece payload. Chunks larger than this are fetched as several
 * blocks. 256 KiB keeps one frame small enough that an urgent message never
 * waits long behind a piece already being written, yet large enough that
 * per-message overhead is negligible.
 */
#define WIRE_MAX_BLOCK (256u * 1024u)

/*
 * Largest plaintext message. The biggest message is a manifest root for a
 * very large volume (page hash list); 1 MiB bounds what a peer can make us
 * buffer before we have validated anything.
 */
#define WIRE_MAX_MSG (1024u * 1024u)
/*
 * A PAGE carries whole chunk-table entries of the manifest: their length and
 * how many a page holds (manifest.c asserts that these equal
 * MANIFEST_ENTRY_LEN and MANIFEST_PAGE_ENTRIES; the codec must not include
 * manifest.h).
 */
#define WIRE_PAGE_ENTRY_LEN   48u
#define WIRE_PAGE_MAX_ENTRIES 1024u

#define WIRE_MAX_TEXT 512 /* error / refusal reason text, bytes */
/* The optional chunk of an ERROR E_BAD_DATA, after its text: u32 chunk, u64 gen. */
#define WIRE_ERROR_CHUNK_LEN 12

/* Message types. Explicit numbers; never renumber, retire as unused. */
enum wire_type {
	WIRE_AUTH = 1,         /* first message each way: identity + signature */
	WIRE_ERROR = 2,        /* fatal error with reason; sender closes */
	WIRE_KEEPALIVE = 3,    /* empty */
	WIRE_GET_ROOT = 4,     /* ask for the signed manifest root */
	WIRE_ROOT = 5,         /* signed manifest root (opaque blob, see manifest) */
	WIRE_GET_PAGE = 6,     /* ask for one page of the chunk table */
	WIRE_PAGE = 7,         /* one page of the chunk table */
	WIRE_HAVE_MAP = 8,     /* bitmap of chunks held at the current generation */
	WIRE_HAVE = 9,         /* one more chunk held */
	WIRE_REQUEST = 10,     /* ask for a block of a chunk */
	WIRE_PIECE = 11,       /* a block of a chunk */
	WIRE_CANCEL = 12,      /* withdraw a request */
	WIRE_REJECT = 13,      /* a request will not be served */
	WIRE_RECEIPT = 14,     /* signed completion receipt */
	WIRE_RECEIPT_ACK = 15, /* the receipt was checked */
	WIRE_DELTA = 16,       /* reserved: signed generation delta (live migration) */
};
#define WIRE_TYPE_MAX 16

/* Error, refusal, reject and receipt-ack codes. */
enum wire_code {
	WIRE_OK = 0,
	WIRE_E_PROTOCOL = 1,     /* malformed or unexpected message */
	WIRE_E_VERSION = 2,      /* no common protocol version */
	WIRE_E_WRONG_VOLUME = 3, /* volume id unknown here */
	WIRE_E_WRONG_KEY = 4,    /* source key does not match */
	WIRE_E_AUTH = 5,         /* authentication failed (secret, signature) */
	WIRE_E_RANGE = 6,        /* request outside the volume or chunk */
	WIRE_E_UNAVAILABLE = 7,  /* chunk not held here */
	WIRE_E_GENERATION = 8,   /* requested generation is not current */
	WIRE_E_ZERO = 9,         /* chunk is all zero: never transferred */
	WIRE_E_BUSY = 10,        /* too many requests or peers */
	WIRE_E_TIMEOUT = 11,     /* peer was silent too long */
	WIRE_E_BAD_RECEIPT = 12, /* receipt does not verify */
	WIRE_E_SHUTDOWN = 13,    /* sender is shutting down */
	WIRE_E_INTERNAL = 14,    /* local failure (I/O) */
	WIRE_E_BAD_DATA = 15,    /* piece failed verification */
};

/* Request priorities; higher is served first. */
enum wire_prio {
	WIRE_PRIO_BACKGROUND = 0,
	WIRE_PRIO_READAHEAD = 1,
	WIRE_PRIO_URGENT = 2,
};

/* AUTH flags */
#define WIRE_AUTH_SOURCE 0x1u /* sender is the volume's source (its key signs manifests) */

/* Decode results (negative). */
#define WIRE_NEED_MORE (-2) /* not an error: more bytes are needed */
#define WIRE_INVALID   (-1)

struct wire_hello {
	uint16_t min_version;
	uint16_t max_version;
	uint32_t flags; /* reserved, must be 0 */
	uint8_t volume_id[WIRE_ID_LEN];
	uint8_t source_key[WIRE_KEY_LEN]; /* Ed25519 key the sender trusts as source */
	uint8_t kx_key[WIRE_KEY_LEN];     /* ephemeral X25519 public key */
};

/* A block of a chunk, as named by REQUEST, CANCEL and REJECT. */
struct wire_block {
	uint32_t chunk;
	uint64_t gen;
	uint32_t offset; /* within the chunk */
	uint32_t length; /* 1..WIRE_MAX_BLOCK */
};

/*
 * A decoded message. Pointer fields point into the buffer given to
 * wire_msg_decode(); they are valid as long as that buffer is.
 */
struct wire_msg {
	uint8_t type;
	union {
		struct {
			uint8_t identity[WIRE_KEY_LEN];
			uint32_t flags;
			uint8_t sig[WIRE_SIG_LEN];
		} auth;
		struct {
			uint16_t code;
			uint16_t text_len;
			const char *text; /* not NUL-terminated */
			/*
			 * ERROR E_BAD_DATA about a piece only: the chunk that
			 * failed verification and the generation it was asked
			 * at (PROTOCOL.md §6.2). has_chunk 0: not sent.
			 */
			uint8_t has_chunk;
			uint32_t chunk;
			uint64_t gen;
		} error; /* also RECEIPT_ACK (never has_chunk) */
		struct {
			const uint8_t *data;
			uint32_t len;
		} blob; /* ROOT, RECEIPT, DELTA */
		struct {
			uint32_t page;
		} get_page;
		struct {
			uint32_t page;
			uint64_t root_gen;
			const uint8_t *data; /* entries */
			uint32_t len;
		} page;
		struct {
			uint32_t first;
			uint32_t count;      /* bits, >= 1 */
			const uint8_t *bits; /* (count + 7) / 8 bytes, LSB first */
		} have_map;
		struct {
			uint32_t chunk;
			uint64_t gen;
		} have;
		struct {
			struct wire_block blk;
			uint8_t prio;
		} request;
		struct {
			uint32_t chunk;
			uint64_t gen;
			uint32_t offset;
			const uint8_t *data;
			uint32_t len; /* 1..WIRE_MAX_BLOCK */
		} piece;
		struct wire_block cancel;
		struct {
			struct wire_block blk;
			uint16_t code;
		} reject;
	} u;
};

/* Byte order helpers, shared by every encoder in the project. */
static inline void wire_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void wire_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void wire_put64(uint8_t *p, uint64_t v)
{
	wire_put32(p, (uint32_t)(v >> 32));
	wire_put32(p + 4, (uint32_t)v);
}
static inline uint16_t wire_get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t wire_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t wire_get64(const uint8_t *p)
{
	return ((uint64_t)wire_get32(p) << 32) | wire_get32(p + 4);
}

/* Hello: exactly WIRE_HELLO_LEN bytes. decode returns 0 or WIRE_INVALID. */
void wire_hello_encode(const struct wire_hello *h, uint8_t out[WIRE_HELLO_LEN]);
int wire_hello_decode(const uint8_t *in, size_t len, struct wire_hello *h);

/*
 * Refusal: magic, u16 code, u16 text length, text. encode returns the
 * length written, or 0 if cap is too small (text longer than WIRE_MAX_TEXT
 * is truncated). decode returns the record length consumed, WIRE_NEED_MORE
 * or WIRE_INVALID; *text points into in.
 */
size_t wire_refuse_encode(uint16_t code, const char *text, uint8_t *out, size_t cap);
int wire_refuse_decode(const uint8_t *in, size_t len, uint16_t *code, const char **text,
                       uint16_t *text_len);

/*
 * Frame header: returns the ciphertext length that follows (>= WIRE_TAG_LEN + 1,
 * <= WIRE_MAX_MSG + WIRE_TAG_LEN) or WIRE_INVALID.
 */
int64_t wire_frame_len(const uint8_t hdr[WIRE_FRAME_HDR_LEN]);

/*
 * Messages (plaintext inside a frame). decode checks structure strictly:
 * known type, exact length, reserved fields zero, lengths in range, no
 * trailing bytes. It does not check meaning (chunk in range, etc.): the
 * receiver does. Returns 0 or WIRE_INVALID.
 */
int wire_msg_decode(const uint8_t *in, size_t len, struct wire_msg *m);

/* Encoded size of m, or 0 if m is not a valid message. */
size_t wire_msg_size(const struct wire_msg *m);

/* Encode m into out; returns the length written, or 0 if m is invalid or cap too small. */
size_t wire_msg_encode(const struct wire_msg *m, uint8_t *out, size_t cap);

/*
 * PIECE header only (type, chunk, gen, offset: WIRE_PIECE_HDR_LEN bytes), so
 * that the sender can read the block's data straight after it.
 */
#define WIRE_PIECE_HDR_LEN 17
void wire_piece_hdr_encode(uint8_t out[WIRE_PIECE_HDR_LEN], uint32_t chunk, uint64_t gen,
                           uint32_t offset);

/* A short name for a message type or code, for logs ("REQUEST", "E_RANGE"). */
const char *wire_type_name(uint8_t type);
const char *wire_code_name(uint16_t code);

#endif
