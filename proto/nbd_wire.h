/* SPDX-License-Identifier: ISC */
/*
 * nbd_wire: the server side of the NBD protocol, as a pure codec.
 *
 * Pure code: no I/O, no allocation, no globals. Every function takes bytes
 * and returns structured values (or the reverse); the connection code in
 * p2pvbd/nbd.c moves the bytes and keeps the state. The reference is the NBD
 * protocol specification, doc/proto.md in github.com/NetworkBlockDevice/nbd
 * ("the spec" below); proto/NBD.md says which parts of it p2pvbd implements.
 * Constant names are the spec's own, so that grepping the spec for a name
 * finds its definition.
 *
 * All integers on the wire are big-endian (network byte order).
 *
 * How a server uses this file, phase by phase:
 *
 *  1. Send nbdw_greeting_encode(); read NBDW_CLIENT_FLAGS_LEN bytes and
 *     check them with nbdw_client_flags_decode() (failure: hard disconnect,
 *     as the spec requires for unknown client flags).
 *  2. Option haggling, repeated: read NBDW_OPT_HEADER_LEN bytes and decode
 *     them with nbdw_opt_header_decode(). Then read exactly `len` bytes of
 *     option data (or skip them, see NBDW_TOO_BIG) and hand them to the
 *     parser for that option. Reply with the nbdw_rep_*() encoders; after
 *     NBD_OPT_EXPORT_NAME reply with nbdw_export_name_reply_encode() instead.
 *  3. Transmission, repeated: read NBDW_REQUEST_LEN bytes and decode them
 *     with nbdw_request_decode(). If nbdw_request_payload_len() is nonzero
 *     (only NBD_CMD_WRITE), that many bytes follow the header and must be
 *     consumed whatever the outcome. Then validate with nbdw_request_check()
 *     and either execute the request or reply with the errno it returned.
 */
#ifndef P2PVBD_NBD_WIRE_H
#define P2PVBD_NBD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------- */
/* Magic numbers                                                          */
/* ---------------------------------------------------------------------- */

#define NBD_MAGIC                  0x4e42444d41474943ull /* "NBDMAGIC", first word of the greeting */
#define NBD_IHAVEOPT               0x49484156454f5054ull /* "IHAVEOPT": greeting and every option */
#define NBD_REP_MAGIC              0x0003e889045565a9ull /* every fixed-newstyle option reply */
#define NBD_REQUEST_MAGIC          0x25609513u           /* every transmission request */
#define NBD_SIMPLE_REPLY_MAGIC     0x67446698u           /* simple reply (was NBD_REPLY_MAGIC) */
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu           /* structured reply chunk */

/* ---------------------------------------------------------------------- */
/* Handshake flags (16 bits, server -> client, in the greeting)          */
/* ---------------------------------------------------------------------- */

#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0) /* server speaks fixed newstyle */
#define NBD_FLAG_NO_ZEROES      (1u << 1) /* server can omit the 124 zeroes after EXPORT_NAME */

/* Client flags (32 bits, client -> server, right after the greeting). */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0) /* client speaks fixed newstyle */
#define NBD_FLAG_C_NO_ZEROES      (1u << 1) /* client wants no 124 zeroes after EXPORT_NAME */

/* What p2pvbd advertises, and so the only client flags it accepts. */
#define NBDW_HFLAGS_SERVER (NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES)
#define NBDW_CFLAGS_KNOWN  (NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)

/* ---------------------------------------------------------------------- */
/* Transmission flags (16 bits, in the EXPORT_NAME reply / NBD_INFO_EXPORT) */
/* ---------------------------------------------------------------------- */

#define NBD_FLAG_HAS_FLAGS         (1u << 0) /* always set */
#define NBD_FLAG_READ_ONLY         (1u << 1) /* writes will fail with NBD_EPERM */
#define NBD_FLAG_SEND_FLUSH        (1u << 2) /* NBD_CMD_FLUSH is supported */
#define NBD_FLAG_SEND_FUA          (1u << 3) /* NBD_CMD_FLAG_FUA is supported */
#define NBD_FLAG_ROTATIONAL        (1u << 4) /* a hint: the export behaves like a spinning disk */
#define NBD_FLAG_SEND_TRIM         (1u << 5) /* NBD_CMD_TRIM is supported */
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6) /* NBD_CMD_WRITE_ZEROES (+ NO_HOLE) is supported */
#define NBD_FLAG_SEND_DF           (1u << 7) /* NBD_CMD_FLAG_DF on READ (structured replies only) */
#define NBD_FLAG_CAN_MULTI_CONN    (1u << 8) /* flush/FUA is visible across connections */
#define NBD_FLAG_SEND_RESIZE       (1u << 9) /* experimental RESIZE extension: never set */
#define NBD_FLAG_SEND_CACHE        (1u << 10) /* NBD_CMD_CACHE is understood */
#define NBD_FLAG_SEND_FAST_ZERO    (1u << 11) /* NBD_CMD_FLAG_FAST_ZERO on WRITE_ZEROES */

/* ---------------------------------------------------------------------- */
/* Options (client -> server during haggling)                             */
/* ---------------------------------------------------------------------- */

#define NBD_OPT_EXPORT_NAME       1  /* choose an export and enter transmission; cannot fail */
#define NBD_OPT_ABORT             2  /* client ends the session; reply NBD_REP_ACK */
#define NBD_OPT_LIST              3  /* list exports: NBD_REP_SERVER each, then NBD_REP_ACK */
#define NBD_OPT_PEEK_EXPORT       4  /* withdrawn; unused */
#define NBD_OPT_STARTTLS          5  /* upgrade to TLS (p2pvbd: FORCEDTLS or NOTLS, NBD.md) */
#define NBD_OPT_INFO              6  /* describe an export (NBD_REP_INFO...) without entering it */
#define NBD_OPT_GO                7  /* like INFO, then enter transmission on NBD_REP_ACK */
#define NBD_OPT_STRUCTURED_REPLY  8  /* enable structured replies */
#define NBD_OPT_LIST_META_CONTEXT 9  /* list metadata contexts matching queries */
#define NBD_OPT_SET_META_CONTEXT  10 /* select metadata contexts for NBD_CMD_BLOCK_STATUS */
#define NBD_OPT_EXTENDED_HEADERS  11 /* newer spec revisions: 64-bit headers; we reply UNSUP */

/* ---------------------------------------------------------------------- */
/* Option reply types (server -> client)                                  */
/* ---------------------------------------------------------------------- */

#define NBD_REP_ACK          1 /* success / end of a list; no data */
#define NBD_REP_SERVER       2 /* one export for NBD_OPT_LIST: u32 name len, name, description */
#define NBD_REP_INFO         3 /* u16 NBD_INFO_* type, then that type's payload */
#define NBD_REP_META_CONTEXT 4 /* u32 context id, context name */

/* Errors have bit 31 set; all may carry a human-readable message as data. */
#define NBD_REP_FLAG_ERROR   (1u << 31)
#define NBD_REP_ERR_UNSUP    (NBD_REP_FLAG_ERROR + 1) /* option unknown to this server */
#define NBD_REP_ERR_POLICY   (NBD_REP_FLAG_ERROR + 2) /* known and valid, but forbidden */
#define NBD_REP_ERR_INVALID  (NBD_REP_FLAG_ERROR + 3) /* syntactically/semantically bad */
#define NBD_REP_ERR_PLATFORM (NBD_REP_FLAG_ERROR + 4) /* not supported on this platform */
#define NBD_REP_ERR_TLS_REQD (NBD_REP_FLAG_ERROR + 5) /* TLS first (FORCEDTLS) */
#define NBD_REP_ERR_UNKNOWN  (NBD_REP_FLAG_ERROR + 6) /* no such export */
#define NBD_REP_ERR_SHUTDOWN (NBD_REP_FLAG_ERROR + 7) /* server is shutting down */
#define NBD_REP_ERR_BLOCK_SIZE_REQD                                                                \
	(NBD_REP_FLAG_ERROR + 8)                     /* client must ask NBD_INFO_BLOCK_SIZE */
#define NBD_REP_ERR_TOO_BIG (NBD_REP_FLAG_ERROR + 9) /* request or reply too large */

/* Information types in NBD_OPT_INFO / NBD_OPT_GO requests and NBD_REP_INFO replies. */
#define NBD_INFO_EXPORT      0 /* u64 size, u16 transmission flags (mandatory before ACK) */
#define NBD_INFO_NAME        1 /* canonical export name */
#define NBD_INFO_DESCRIPTION 2 /* human-readable description */
#define NBD_INFO_BLOCK_SIZE  3 /* u32 minimum, preferred, maximum block size */

/* ---------------------------------------------------------------------- */
/* Commands (request "type" field) and command flags                      */
/* ---------------------------------------------------------------------- */

#define NBD_CMD_READ         0 /* read length bytes at offset */
#define NBD_CMD_WRITE        1 /* write: the ONLY request followed by a payload (length bytes) */
#define NBD_CMD_DISC         2 /* soft disconnect: no reply; offset and length must be 0 */
#define NBD_CMD_FLUSH        3 /* persist completed writes; offset and length must be 0 */
#define NBD_CMD_TRIM         4 /* hint: the range is no longer needed */
#define NBD_CMD_CACHE        5 /* hint: the range will be read soon (p2pvbd: fetch it early) */
#define NBD_CMD_WRITE_ZEROES 6 /* write zeroes without a payload */
#define NBD_CMD_BLOCK_STATUS 7 /* query metadata contexts (structured reply only) */
#define NBD_CMD_RESIZE       8 /* experimental RESIZE extension: unsupported */

#define NBD_CMD_FLAG_FUA       (1u << 0) /* reply only once the command's writes are durable */
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1) /* WRITE_ZEROES: allocate, do not punch a hole */
#define NBD_CMD_FLAG_DF        (1u << 2) /* READ: at most one content chunk in the reply */
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3) /* BLOCK_STATUS: one extent per context */
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4) /* WRITE_ZEROES: fail with ENOTSUP unless fast */

/* ---------------------------------------------------------------------- */
/* Structured replies                                                     */
/* ---------------------------------------------------------------------- */

#define NBD_REPLY_FLAG_DONE (1u << 0) /* this is the final chunk of the reply */

#define NBD_REPLY_TYPE_NONE         0                /* empty final chunk (always with DONE) */
#define NBD_REPLY_TYPE_OFFSET_DATA  1                /* u64 offset, then data */
#define NBD_REPLY_TYPE_OFFSET_HOLE  2                /* u64 offset, u32 size: reads as zeroes */
#define NBD_REPLY_TYPE_BLOCK_STATUS 5                /* u32 context id, then descriptors */
#define NBD_REPLY_TYPE_FLAG_ERROR   (1u << 15)       /* error chunks have bit 15 set */
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) + 1) /* u32 error, u16 msg len, msg */
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) + 2) /* ... as ERROR, then u64 offset */

/* base:allocation status flags (block status descriptors). */
#define NBD_STATE_HOLE (1u << 0) /* not allocated in the backend */
#define NBD_STATE_ZERO (1u << 1) /* reads as zeroes */

/* The one metadata context the spec defines, and the only one we offer. */
#define NBDW_CONTEXT_BASE_ALLOCATION "base:allocation"

/* ---------------------------------------------------------------------- */
/* Error values (simple reply "error", error chunk "error")               */
/* ---------------------------------------------------------------------- */

#define NBD_EPERM     1   /* operation not permitted (write to a read-only export) */
#define NBD_EIO       5   /* input/output error */
#define NBD_ENOMEM    12  /* cannot allocate memory (SHOULD NOT be used) */
#define NBD_EINVAL    22  /* invalid argument: bad command, flags, range */
#define NBD_ENOSPC    28  /* no space left: write beyond the end of the export */
#define NBD_EOVERFLOW 75  /* value too large: only for READ with NBD_CMD_FLAG_DF */
#define NBD_ENOTSUP   95  /* only for WRITE_ZEROES with NBD_CMD_FLAG_FAST_ZERO */
#define NBD_ESHUTDOWN 108 /* server is shutting down */

/* ---------------------------------------------------------------------- */
/* Sizes and limits                                                       */
/* ---------------------------------------------------------------------- */

#define NBDW_GREETING_LEN         18  /* u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags */
#define NBDW_CLIENT_FLAGS_LEN     4   /* u32 client flags */
#define NBDW_OPT_HEADER_LEN       16  /* u64 IHAVEOPT, u32 option, u32 data length */
#define NBDW_REP_HEADER_LEN       20  /* u64 magic, u32 option, u32 reply type, u32 length */
#define NBDW_EXPORT_ZEROES        124 /* reserved zeroes after the EXPORT_NAME reply */
#define NBDW_EXPORT_REPLY_SHORT   10  /* u64 size, u16 transmission flags */
#define NBDW_EXPORT_REPLY_LEN     (NBDW_EXPORT_REPLY_SHORT + NBDW_EXPORT_ZEROES)
#define NBDW_REQUEST_LEN          28 /* u32 magic, u16 flags, u16 type, u64 cookie, u64 off, u32 len */
#define NBDW_SIMPLE_REPLY_LEN     16 /* u32 magic, u32 error, u64 cookie */
#define NBDW_CHUNK_HEADER_LEN     20 /* u32 magic, u16 flags, u16 type, u64 cookie, u32 length */
#define NBDW_OFFSET_DATA_HDR_LEN  (NBDW_CHUNK_HEADER_LEN + 8)     /* + u64 offset; data follows */
#define NBDW_OFFSET_HOLE_LEN      (NBDW_CHUNK_HEADER_LEN + 8 + 4) /* + u64 offset, u32 size */
#define NBDW_BLOCK_STATUS_HDR_LEN (NBDW_CHUNK_HEADER_LEN + 4)     /* + u32 context id */
#define NBDW_BLOCK_DESC_LEN       8 /* u32 extent length, u32 status flags */
#define NBDW_ERROR_CHUNK_HDR_LEN  (NBDW_CHUNK_HEADER_LEN + 4 + 2) /* + u32 error, u16 msg len */

/*
 * Longest string (export name, query, context name, message): the spec's
 * hard limit ("MUST be no longer than 4096 bytes").
 */
#define NBDW_MAX_STRING 4096u

/*
 * Largest option data we read into memory. 16 KiB holds the largest legal
 * NBD_OPT_GO (a 4096-byte name and every information request we know) and a
 * meta-context option with a maximal export name and two maximal queries,
 * while bounding what an unauthenticated client can make us buffer. Clients
 * in practice send a few dozen bytes.
 */
#define NBDW_MAX_OPTION_LEN (16u * 1024u)

/*
 * Largest READ or WRITE length we serve, and the maximum block size we
 * advertise. 32 MiB (2^25) is the largest length the spec says a peer
 * SHOULD NOT treat as a denial of service, and what qemu and nbdkit use.
 */
#define NBDW_MAX_PAYLOAD (32u * 1024u * 1024u)

/* Results of the decoders (negative; 0 is success). */
#define NBDW_INVALID (-1) /* malformed: see each function for what the server does */
#define NBDW_TOO_BIG (-2) /* option data longer than the caller's bound (header still filled) */

/* ---------------------------------------------------------------------- */
/* Decoded structures                                                     */
/* ---------------------------------------------------------------------- */

/* A string inside an input buffer: never NUL-terminated, never copied. */
struct nbdw_str {
	const char *ptr; /* points into the decoder's input; NULL only when len == 0 */
	uint32_t len;    /* <= NBDW_MAX_STRING */
};

struct nbdw_opt_header {
	uint32_t option; /* NBD_OPT_* (or anything: unknown options get NBD_REP_ERR_UNSUP) */
	uint32_t len;    /* length of the option data that follows */
};

/* NBD_OPT_INFO and NBD_OPT_GO (identical data). */
struct nbdw_opt_go {
	struct nbdw_str name; /* export name; empty = default export */
	uint16_t n_info;      /* number of information requests */
	const uint8_t *info;  /* n_info big-endian u16s, inside the input; use nbdw_opt_go_info() */
	uint32_t info_mask;   /* bit (1 << t) for each known NBD_INFO_* type t requested */
};

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT (identical data). */
struct nbdw_opt_meta {
	struct nbdw_str name; /* export name */
	uint32_t n_queries;   /* number of queries (0: LIST = all, SET = select none) */
	const uint8_t
	    *queries; /* the queries' bytes inside the input; walk with nbdw_meta_next() */
	size_t queries_len;
};

/* Walks the queries of a parsed meta-context option. */
struct nbdw_meta_iter {
	const uint8_t *p;
	size_t left;
	uint32_t remaining;
};

/* A transmission request header. */
struct nbdw_request {
	uint16_t flags;  /* NBD_CMD_FLAG_* */
	uint16_t type;   /* NBD_CMD_* */
	uint64_t cookie; /* opaque ("handle" in older spec text); echoed in every reply */
	uint64_t offset;
	uint32_t length;
};

/*
 * What the connection negotiated: everything nbdw_request_check() needs to
 * judge a request. Filled once when transmission starts.
 */
struct nbdw_limits {
	uint64_t export_size; /* bytes */
	uint32_t min_block;   /* advertised minimum block size: power of 2, 1 = none (0 = 1) */
	uint32_t max_payload; /* largest READ/WRITE length, normally NBDW_MAX_PAYLOAD */
	uint16_t tflags; /* transmission flags sent to the client (NBD_FLAG_READ_ONLY included) */
	bool structured; /* NBD_OPT_STRUCTURED_REPLY was acknowledged */
	uint32_t meta_base_allocation; /* context id given to base:allocation, 0 = not selected */
};

/* ---------------------------------------------------------------------- */
/* Handshake                                                              */
/* ---------------------------------------------------------------------- */

/* Server greeting: NBDMAGIC, IHAVEOPT, NBDW_HFLAGS_SERVER. */
void nbdw_greeting_encode(uint8_t out[NBDW_GREETING_LEN]);

/*
 * Client flags: exactly NBDW_CLIENT_FLAGS_LEN bytes. Returns 0 and *cflags,
 * or NBDW_INVALID if a bit outside NBDW_CFLAGS_KNOWN is set; the spec says
 * the server MUST then drop the connection. A client without
 * NBD_FLAG_C_FIXED_NEWSTYLE is accepted (the spec lets the server honour
 * fixed newstyle anyway); whether to serve it is the caller's choice.
 */
int nbdw_client_flags_decode(const uint8_t *in, size_t len, uint32_t *cflags);

/*
 * Option header: exactly NBDW_OPT_HEADER_LEN bytes.
 *  - 0: *h is valid and h->len <= max_len; read h->len bytes of data next.
 *  - NBDW_INVALID: wrong magic. The stream cannot be resynchronised: hard
 *    disconnect.
 *  - NBDW_TOO_BIG: *h is valid but h->len > max_len. The server skips the
 *    h->len data bytes without storing them (the spec requires that it not
 *    fail to parse the next option) and replies NBD_REP_ERR_TOO_BIG, except
 *    for NBD_OPT_EXPORT_NAME, which cannot be answered with an error, so
 *    the server hard-disconnects. A server that deems the length itself a
 *    denial of service MAY hard-disconnect instead.
 */
int nbdw_opt_header_decode(const uint8_t *in, size_t len, uint32_t max_len,
                           struct nbdw_opt_header *h);

/*
 * Option data parsers. Each takes exactly the option's data (h->len bytes)
 * and is strict: lengths consistent, strings at most NBDW_MAX_STRING bytes
 * and free of NUL, no trailing bytes. Returned pointers point into `in`.
 * On NBDW_INVALID the server replies NBD_REP_ERR_INVALID (for EXPORT_NAME,
 * which cannot be errored: hard disconnect).
 */

/* NBD_OPT_EXPORT_NAME: the whole data is the name. */
int nbdw_opt_export_name_parse(const uint8_t *in, size_t len, struct nbdw_str *name);

/* NBD_OPT_INFO / NBD_OPT_GO: u32 name length, name, u16 count, u16 each. */
int nbdw_opt_go_parse(const uint8_t *in, size_t len, struct nbdw_opt_go *go);

/* The i-th information request (i < go->n_info), known or not. */
uint16_t nbdw_opt_go_info(const struct nbdw_opt_go *go, uint16_t i);

/*
 * Options without data: NBD_OPT_LIST, NBD_OPT_STARTTLS and
 * NBD_OPT_STRUCTURED_REPLY must have len == 0. NBD_OPT_ABORT accepts any
 * length: the spec says the server SHOULD ignore data sent with ABORT
 * rather than reject it. Returns 0 or NBDW_INVALID (also for any other
 * option, which is not a no-data option).
 */
int nbdw_opt_nodata_check(uint32_t option, size_t len);

/*
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: u32 export name
 * length, name, u32 number of queries, then per query u32 length + query.
 * Every query is checked here, so walking them afterwards cannot fail.
 * Queries are not checked for a "namespace:" prefix: the spec lets the
 * server ignore queries it does not understand.
 */
int nbdw_opt_meta_parse(const uint8_t *in, size_t len, struct nbdw_opt_meta *m);

/* Start walking m's queries; each nbdw_meta_next() yields one, false at the end. */
void nbdw_meta_iter_init(struct nbdw_meta_iter *it, const struct nbdw_opt_meta *m);
bool nbdw_meta_next(struct nbdw_meta_iter *it, struct nbdw_str *query);

/* ---------------------------------------------------------------------- */
/* Option replies                                                         */
/* ---------------------------------------------------------------------- */

/*
 * Every encoder below writes a whole reply (header and payload) and returns
 * its length, or 0 if cap is too small or an argument breaks the spec (a
 * string longer than NBDW_MAX_STRING, a non-error type for an error reply):
 * we never send what we would refuse to receive. Strings are pointer +
 * length and may be NULL when the length is 0.
 */

/* Header only: magic, option, reply type, payload length. */
void nbdw_rep_header_encode(uint8_t out[NBDW_REP_HEADER_LEN], uint32_t option, uint32_t type,
                            uint32_t len);

/* NBD_REP_ACK (no data). */
size_t nbdw_rep_ack_encode(uint8_t *out, size_t cap, uint32_t option);

/* NBD_REP_SERVER: u32 name length, name, then the optional description. */
size_t nbdw_rep_server_encode(uint8_t *out, size_t cap, uint32_t option, const char *name,
                              size_t name_len, const char *desc, size_t desc_len);

/* NBD_REP_INFO / NBD_INFO_EXPORT: u16 0, u64 size, u16 transmission flags. */
#define NBDW_REP_INFO_EXPORT_LEN (NBDW_REP_HEADER_LEN + 2 + 8 + 2)
size_t nbdw_rep_info_export_encode(uint8_t *out, size_t cap, uint32_t option, uint64_t size,
                                   uint16_t tflags);

/* NBD_REP_INFO / NBD_INFO_NAME: u16 1, name. */
size_t nbdw_rep_info_name_encode(uint8_t *out, size_t cap, uint32_t option, const char *name,
                                 size_t name_len);

/* NBD_REP_INFO / NBD_INFO_DESCRIPTION: u16 2, description. */
size_t nbdw_rep_info_description_encode(uint8_t *out, size_t cap, uint32_t option, const char *desc,
                                        size_t desc_len);

/*
 * NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: u16 3, u32 minimum, preferred, maximum.
 * Refused (0) unless the values obey the spec's block size constraints:
 * minimum a power of 2 <= 64 KiB; preferred a power of 2 >= max(minimum,
 * 512); maximum a multiple of minimum (or 0xffffffff) and >= preferred.
 * (The spec only requires maximum >= min(preferred, export size); we
 * demand the stricter form because we do not know the size here.)
 */
#define NBDW_REP_INFO_BLOCK_SIZE_LEN (NBDW_REP_HEADER_LEN + 2 + 4 + 4 + 4)
size_t nbdw_rep_info_block_size_encode(uint8_t *out, size_t cap, uint32_t option, uint32_t min,
                                       uint32_t pref, uint32_t max);

/* NBD_REP_META_CONTEXT: u32 context id, context name (non-empty). */
size_t nbdw_rep_meta_context_encode(uint8_t *out, size_t cap, uint32_t option, uint32_t ctx_id,
                                    const char *name, size_t name_len);

/* An error reply (type has bit 31 set: NBD_REP_ERR_*), with an optional message. */
size_t nbdw_rep_err_encode(uint8_t *out, size_t cap, uint32_t option, uint32_t type,
                           const char *msg, size_t msg_len);

/*
 * The reply to NBD_OPT_EXPORT_NAME (no option-reply header): u64 size, u16
 * transmission flags, then NBDW_EXPORT_ZEROES zero bytes unless the client
 * set NBD_FLAG_C_NO_ZEROES. Returns NBDW_EXPORT_REPLY_SHORT or
 * NBDW_EXPORT_REPLY_LEN, or 0 if cap is too small.
 */
size_t nbdw_export_name_reply_encode(uint8_t *out, size_t cap, uint64_t size, uint16_t tflags,
                                     bool no_zeroes);

/* ---------------------------------------------------------------------- */
/* Transmission                                                           */
/* ---------------------------------------------------------------------- */

/*
 * Request header: exactly NBDW_REQUEST_LEN bytes. Returns 0, or NBDW_INVALID
 * for a wrong magic (the stream is lost: hard disconnect). Only framing is
 * checked here; every field's meaning is nbdw_request_check()'s job.
 */
int nbdw_request_decode(const uint8_t *in, size_t len, struct nbdw_request *r);

/* The client side, for tests and tools. */
void nbdw_request_encode(uint8_t out[NBDW_REQUEST_LEN], const struct nbdw_request *r);

/*
 * Bytes that follow the request header on the wire: r->length for
 * NBD_CMD_WRITE, 0 for every other command (only WRITE carries a payload).
 * The connection MUST consume them before the next header whatever
 * nbdw_request_check() says: read them for a valid WRITE, otherwise skip
 * them without storing them and then send the error reply. The spec lets a
 * server hard-disconnect instead when the length is large enough to be a
 * denial of service (above NBDW_MAX_PAYLOAD, i.e. at least 2^25 bytes).
 */
uint32_t nbdw_request_payload_len(const struct nbdw_request *r);

/*
 * Validate a decoded request against what was negotiated. Returns 0 or the
 * NBD_E* error to reply with (never executes anything). Checked in this
 * order, so the first broken rule decides the errno:
 *  1. command unknown, or not advertised (FLUSH, TRIM, WRITE_ZEROES, CACHE
 *     need their NBD_FLAG_SEND_*; BLOCK_STATUS needs structured replies and
 *     base:allocation selected): NBD_EINVAL;
 *  2. flag bits unknown or not valid for the command or not negotiated:
 *     NBD_EINVAL;
 *  3. a write-type command (WRITE, WRITE_ZEROES, TRIM) on a read-only
 *     export: NBD_EPERM;
 *  4. DISC/FLUSH with nonzero offset or length; length 0 on any other
 *     command: NBD_EINVAL;
 *  5. offset + length wraps past 2^64: NBD_EINVAL;
 *  6. offset or length not a multiple of min_block: NBD_EINVAL;
 *  7. READ/WRITE length above max_payload: NBD_EINVAL;
 *  8. offset + length beyond the export: NBD_ENOSPC for WRITE and
 *     WRITE_ZEROES, NBD_EINVAL for the others.
 * For NBD_CMD_DISC the result only matters for logging: there is never a
 * reply, the server finishes in-flight requests and closes.
 */
int nbdw_request_check(const struct nbdw_request *r, const struct nbdw_limits *lim);

/* Simple reply: magic, error, cookie. For READ with error 0 the data follows. */
void nbdw_simple_reply_encode(uint8_t out[NBDW_SIMPLE_REPLY_LEN], uint32_t error, uint64_t cookie);

/* Structured reply chunk header only: magic, flags, type, cookie, payload length. */
void nbdw_chunk_header_encode(uint8_t out[NBDW_CHUNK_HEADER_LEN], uint16_t flags, uint16_t type,
                              uint64_t cookie, uint32_t len);

/* NBD_REPLY_TYPE_NONE: always with NBD_REPLY_FLAG_DONE, no payload. */
void nbdw_chunk_none_encode(uint8_t out[NBDW_CHUNK_HEADER_LEN], uint64_t cookie);

/*
 * NBD_REPLY_TYPE_OFFSET_DATA header and offset; the caller writes data_len
 * bytes of data straight after it. Returns NBDW_OFFSET_DATA_HDR_LEN, or 0 if
 * data_len is 0 or too large for the chunk length field (> 2^32 - 9).
 */
size_t nbdw_chunk_offset_data_hdr_encode(uint8_t out[NBDW_OFFSET_DATA_HDR_LEN], uint16_t flags,
                                         uint64_t cookie, uint64_t offset, uint32_t data_len);

/* NBD_REPLY_TYPE_OFFSET_HOLE. Returns NBDW_OFFSET_HOLE_LEN, or 0 if hole_size is 0. */
size_t nbdw_chunk_offset_hole_encode(uint8_t out[NBDW_OFFSET_HOLE_LEN], uint16_t flags,
                                     uint64_t cookie, uint64_t offset, uint32_t hole_size);

/*
 * NBD_REPLY_TYPE_BLOCK_STATUS header and context id, announcing n_desc
 * descriptors that the caller writes after it with nbdw_block_desc_encode().
 * Returns NBDW_BLOCK_STATUS_HDR_LEN, or 0 if n_desc is 0 or too large.
 */
size_t nbdw_chunk_block_status_hdr_encode(uint8_t out[NBDW_BLOCK_STATUS_HDR_LEN], uint16_t flags,
                                          uint64_t cookie, uint32_t ctx_id, uint32_t n_desc);

/* One block status descriptor. Returns NBDW_BLOCK_DESC_LEN, or 0 if length is 0. */
size_t nbdw_block_desc_encode(uint8_t out[NBDW_BLOCK_DESC_LEN], uint32_t length, uint32_t status);

/*
 * NBD_REPLY_TYPE_ERROR: u32 error (nonzero), u16 message length, message.
 * Returns the chunk length, or 0 if cap is too small, error is 0 or the
 * message is longer than NBDW_MAX_STRING.
 */
size_t nbdw_chunk_error_encode(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                               uint32_t error, const char *msg, size_t msg_len);

/* NBD_REPLY_TYPE_ERROR_OFFSET: as nbdw_chunk_error_encode(), then u64 offset. */
size_t nbdw_chunk_error_offset_encode(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                                      uint32_t error, const char *msg, size_t msg_len,
                                      uint64_t offset);

/* ---------------------------------------------------------------------- */
/* Names for logs ("NBD_OPT_GO"); unknown values give "unknown".          */
/* ---------------------------------------------------------------------- */

const char *nbdw_opt_name(uint32_t option);
const char *nbdw_rep_name(uint32_t type);
const char *nbdw_info_name(uint16_t info);
const char *nbdw_cmd_name(uint16_t type);
const char *nbdw_reply_type_name(uint16_t type);
const char *nbdw_err_name(uint32_t error);

#endif
