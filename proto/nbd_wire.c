/* SPDX-License-Identifier: ISC */
/*
 * nbd_wire: the server side of the NBD protocol, as a pure codec (see
 * nbd_wire.h, proto/NBD.md and the NBD spec, doc/proto.md).
 *
 * Pure code: no I/O, no allocation, no globals, no logging. Decoders are
 * strict (exact lengths, no trailing bytes, consistent inner lengths),
 * because every byte here comes from a client before anything else has
 * checked it. Encoders refuse arguments the spec forbids, so that we never
 * send what a strict client would refuse to receive.
 */
#include <string.h>

#include "nbd_wire.h"
#include "wire.h"

_Static_assert(NBDW_GREETING_LEN == 8 + 8 + 2, "greeting layout");
_Static_assert(NBDW_REQUEST_LEN == 4 + 2 + 2 + 8 + 8 + 4, "request layout");
_Static_assert(NBDW_SIMPLE_REPLY_LEN == 4 + 4 + 8, "simple reply layout");
_Static_assert(NBDW_CHUNK_HEADER_LEN == 4 + 2 + 2 + 8 + 4, "chunk header layout");
_Static_assert(NBDW_REP_HEADER_LEN == 8 + 4 + 4 + 4, "option reply header layout");
_Static_assert(NBDW_MAX_OPTION_LEN >= 4 + NBDW_MAX_STRING + 2 + 2 * 4,
               "a maximal NBD_OPT_GO must fit the option bound");
_Static_assert(NBDW_MAX_OPTION_LEN >= 4 + NBDW_MAX_STRING + 4 + 2 * (4 + NBDW_MAX_STRING),
               "a meta-context option with two maximal queries must fit the option bound");

/* Payload lengths of the fixed option replies (after the 20-byte header). */
#define INFO_EXPORT_PAYLOAD     (2 + 8 + 2)
#define INFO_BLOCK_SIZE_PAYLOAD (2 + 4 + 4 + 4)
#define INFO_TYPE_LEN           2 /* the u16 NBD_INFO_* at the start of every NBD_REP_INFO */

/* Largest minimum block size the spec allows (2^16), and the preferred block size floor. */
#define MAX_MIN_BLOCK  65536u
#define MIN_PREF_BLOCK 512u
#define NO_MAX_BLOCK   0xffffffffu /* "no inherent limit" in NBD_INFO_BLOCK_SIZE */

/* Every command flag this codec knows. */
#define CMD_FLAGS_KNOWN                                                                            \
	(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE |        \
	 NBD_CMD_FLAG_FAST_ZERO)

/* ---------------------------------------------------------------------- */
/* Handshake                                                              */
/* ---------------------------------------------------------------------- */

void nbdw_greeting_encode(uint8_t out[NBDW_GREETING_LEN])
{
	wire_put64(out, NBD_MAGIC);
	wire_put64(out + 8, NBD_IHAVEOPT);
	wire_put16(out + 16, NBDW_HFLAGS_SERVER);
}

int nbdw_client_flags_decode(const uint8_t *in, size_t len, uint32_t *cflags)
{
	if (len != NBDW_CLIENT_FLAGS_LEN)
		return NBDW_INVALID;
	uint32_t f = wire_get32(in);
	/* We advertise both handshake flags, so both client flags match something we sent. */
	if (f & ~(uint32_t)NBDW_CFLAGS_KNOWN)
		return NBDW_INVALID;
	*cflags = f;
	return 0;
}

int nbdw_opt_header_decode(const uint8_t *in, size_t len, uint32_t max_len,
                           struct nbdw_opt_header *h)
{
	if (len != NBDW_OPT_HEADER_LEN || wire_get64(in) != NBD_IHAVEOPT)
		return NBDW_INVALID;
	h->option = wire_get32(in + 8);
	h->len = wire_get32(in + 12);
	return h->len > max_len ? NBDW_TOO_BIG : 0;
}

/*
 * A string of n bytes at p, as the spec defines strings: at most
 * NBDW_MAX_STRING bytes, no NUL. UTF-8 validity is not checked: we only
 * compare names byte for byte, and a stray byte cannot hurt a comparison.
 */
static int str_ok(const uint8_t *p, size_t n)
{
	return n <= NBDW_MAX_STRING && (n == 0 || memchr(p, 0, n) == NULL);
}

static void str_set(struct nbdw_str *s, const uint8_t *p, size_t n)
{
	s->ptr = n ? (const char *)p : NULL;
	s->len = (uint32_t)n;
}

int nbdw_opt_export_name_parse(const uint8_t *in, size_t len, struct nbdw_str *name)
{
	if (!str_ok(in, len))
		return NBDW_INVALID;
	str_set(name, in, len);
	return 0;
}

/*
 * u32 name length, name, u16 count, count * u16. The spec says the name
 * length "MUST be no larger than the option data length - 6"; the exact
 * total below implies that.
 */
int nbdw_opt_go_parse(const uint8_t *in, size_t len, struct nbdw_opt_go *go)
{
	memset(go, 0, sizeof(*go));
	if (len < 4 + 2)
		return NBDW_INVALID;
	uint32_t nlen = wire_get32(in);
	if (nlen > len - 6 || !str_ok(in + 4, nlen))
		return NBDW_INVALID;
	const uint8_t *p = in + 4 + nlen;
	uint16_t n = wire_get16(p);
	if (len != 4 + (size_t)nlen + 2 + 2 * (size_t)n)
		return NBDW_INVALID;
	str_set(&go->name, in + 4, nlen);
	go->n_info = n;
	go->info = p + 2;
	for (uint16_t i = 0; i < n; i++) {
		uint16_t t = wire_get16(go->info + 2 * (size_t)i);
		if (t > NBD_INFO_BLOCK_SIZE)
			continue; /* the server MUST ignore requests it does not understand */
		/* The client MUST NOT list an item twice: a repeat is a malformed option. */
		if (go->info_mask & (1u << t))
			return NBDW_INVALID;
		go->info_mask |= 1u << t;
	}
	return 0;
}

uint16_t nbdw_opt_go_info(const struct nbdw_opt_go *go, uint16_t i)
{
	return i < go->n_info ? wire_get16(go->info + 2 * (size_t)i) : 0;
}

int nbdw_opt_nodata_check(uint32_t option, size_t len)
{
	switch (option) {
	case NBD_OPT_ABORT:
		return 0; /* "a server SHOULD ignore any data sent by the client" */
	case NBD_OPT_LIST:
	case NBD_OPT_STARTTLS:
	case NBD_OPT_STRUCTURED_REPLY:
		return len == 0 ? 0 : NBDW_INVALID;
	default:
		return NBDW_INVALID;
	}
}

int nbdw_opt_meta_parse(const uint8_t *in, size_t len, struct nbdw_opt_meta *m)
{
	memset(m, 0, sizeof(*m));
	if (len < 4 + 4)
		return NBDW_INVALID;
	uint32_t nlen = wire_get32(in);
	if (nlen > len - 8 || !str_ok(in + 4, nlen))
		return NBDW_INVALID;
	const uint8_t *p = in + 4 + nlen;
	uint32_t count = wire_get32(p);
	p += 4;
	size_t left = len - 8 - nlen;
	const uint8_t *queries = p;
	size_t queries_len = left;

	/* Each query needs at least its 4-byte length, so count is bounded by the bytes left. */
	if (count > left / 4)
		return NBDW_INVALID;
	for (uint32_t i = 0; i < count; i++) {
		if (left < 4)
			return NBDW_INVALID;
		uint32_t qlen = wire_get32(p);
		if (qlen > left - 4 || !str_ok(p + 4, qlen))
			return NBDW_INVALID;
		p += 4 + qlen;
		left -= 4 + (size_t)qlen;
	}
	if (left != 0)
		return NBDW_INVALID;
	str_set(&m->name, in + 4, nlen);
	m->n_queries = count;
	m->queries = queries;
	m->queries_len = queries_len;
	return 0;
}

void nbdw_meta_iter_init(struct nbdw_meta_iter *it, const struct nbdw_opt_meta *m)
{
	it->p = m->queries;
	it->left = m->queries_len;
	it->remaining = m->n_queries;
}

/* The bounds were checked by nbdw_opt_meta_parse(); they are checked again so a misuse
 * (an iterator over an unparsed struct) stops instead of overrunning. */
bool nbdw_meta_next(struct nbdw_meta_iter *it, struct nbdw_str *query)
{
	if (it->remaining == 0 || it->left < 4)
		return false;
	uint32_t qlen = wire_get32(it->p);
	if (qlen > it->left - 4)
		return false;
	str_set(query, it->p + 4, qlen);
	it->p += 4 + qlen;
	it->left -= 4 + (size_t)qlen;
	it->remaining--;
	return true;
}

/* ---------------------------------------------------------------------- */
/* Option replies                                                         */
/* ---------------------------------------------------------------------- */

void nbdw_rep_header_encode(uint8_t out[NBDW_REP_HEADER_LEN], uint32_t option, uint32_t type,
                            uint32_t len)
{
	wire_put64(out, NBD_REP_MAGIC);
	wire_put32(out + 8, option);
	wire_put32(out + 12, type);
	wire_put32(out + 16, len);
}

/* A string we are about to send: same rules as the ones we accept. */
static int out_str_ok(const char *s, size_t n)
{
	return n <= NBDW_MAX_STRING && (n == 0 || (s != NULL && memchr(s, 0, n) == NULL));
}

static void put_bytes(uint8_t *out, const char *s, size_t n)
{
	if (n)
		memcpy(out, s, n);
}

size_t nbdw_rep_ack_encode(uint8_t *out, size_t cap, uint32_t option)
{
	if (cap < NBDW_REP_HEADER_LEN)
		return 0;
	nbdw_rep_header_encode(out, option, NBD_REP_ACK, 0);
	return NBDW_REP_HEADER_LEN;
}

size_t nbdw_rep_server_encode(uint8_t *out, size_t cap, uint32_t option, const char *name,
                              size_t name_len, const char *desc, size_t desc_len)
{
	if (!out_str_ok(name, name_len) || !out_str_ok(desc, desc_len))
		return 0;
	size_t plen = 4 + name_len + desc_len;
	if (cap < NBDW_REP_HEADER_LEN + plen)
		return 0;
	nbdw_rep_header_encode(out, option, NBD_REP_SERVER, (uint32_t)plen);
	wire_put32(out + NBDW_REP_HEADER_LEN, (uint32_t)name_len);
	put_bytes(out + NBDW_REP_HEADER_LEN + 4, name, name_len);
	put_bytes(out + NBDW_REP_HEADER_LEN + 4 + name_len, desc, desc_len);
	return NBDW_REP_HEADER_LEN + plen;
}

size_t nbdw_rep_info_export_encode(uint8_t *out, size_t cap, uint32_t option, uint64_t size,
                                   uint16_t tflags)
{
	if (cap < NBDW_REP_INFO_EXPORT_LEN)
		return 0;
	nbdw_rep_header_encode(out, option, NBD_REP_INFO, INFO_EXPORT_PAYLOAD);
	wire_put16(out + NBDW_REP_HEADER_LEN, NBD_INFO_EXPORT);
	wire_put64(out + NBDW_REP_HEADER_LEN + 2, size);
	wire_put16(out + NBDW_REP_HEADER_LEN + 10, tflags);
	return NBDW_REP_INFO_EXPORT_LEN;
}

/* NBD_INFO_NAME and NBD_INFO_DESCRIPTION: u16 type, then the string. */
static size_t rep_info_str(uint8_t *out, size_t cap, uint32_t option, uint16_t info, const char *s,
                           size_t n)
{
	if (!out_str_ok(s, n) || cap < NBDW_REP_HEADER_LEN + INFO_TYPE_LEN + n)
		return 0;
	nbdw_rep_header_encode(out, option, NBD_REP_INFO, (uint32_t)(INFO_TYPE_LEN + n));
	wire_put16(out + NBDW_REP_HEADER_LEN, info);
	put_bytes(out + NBDW_REP_HEADER_LEN + INFO_TYPE_LEN, s, n);
	return NBDW_REP_HEADER_LEN + INFO_TYPE_LEN + n;
}

size_t nbdw_rep_info_name_encode(uint8_t *out, size_t cap, uint32_t option, const char *name,
                                 size_t name_len)
{
	return rep_info_str(out, cap, option, NBD_INFO_NAME, name, name_len);
}

size_t nbdw_rep_info_description_encode(uint8_t *out, size_t cap, uint32_t option, const char *desc,
                                        size_t desc_len)
{
	return rep_info_str(out, cap, option, NBD_INFO_DESCRIPTION, desc, desc_len);
}

static int pow2(uint32_t v)
{
	return v != 0 && (v & (v - 1)) == 0;
}

size_t nbdw_rep_info_block_size_encode(uint8_t *out, size_t cap, uint32_t option, uint32_t min,
                                       uint32_t pref, uint32_t max)
{
	uint32_t pref_floor = min > MIN_PREF_BLOCK ? min : MIN_PREF_BLOCK;

	if (!pow2(min) || min > MAX_MIN_BLOCK || !pow2(pref) || pref < pref_floor)
		return 0;
	if (max != NO_MAX_BLOCK && (max % min != 0 || max < pref))
		return 0;
	if (cap < NBDW_REP_INFO_BLOCK_SIZE_LEN)
		return 0;
	nbdw_rep_header_encode(out, option, NBD_REP_INFO, INFO_BLOCK_SIZE_PAYLOAD);
	wire_put16(out + NBDW_REP_HEADER_LEN, NBD_INFO_BLOCK_SIZE);
	wire_put32(out + NBDW_REP_HEADER_LEN + 2, min);
	wire_put32(out + NBDW_REP_HEADER_LEN + 6, pref);
	wire_put32(out + NBDW_REP_HEADER_LEN + 10, max);
	return NBDW_REP_INFO_BLOCK_SIZE_LEN;
}

size_t nbdw_rep_meta_context_encode(uint8_t *out, size_t cap, uint32_t option, uint32_t ctx_id,
                                    const char *name, size_t name_len)
{
	/* A context name is "namespace:leaf", so never empty. */
	if (name_len == 0 || !out_str_ok(name, name_len) ||
	    cap < NBDW_REP_HEADER_LEN + 4 + name_len)
		return 0;
	nbdw_rep_header_encode(out, option, NBD_REP_META_CONTEXT, (uint32_t)(4 + name_len));
	wire_put32(out + NBDW_REP_HEADER_LEN, ctx_id);
	put_bytes(out + NBDW_REP_HEADER_LEN + 4, name, name_len);
	return NBDW_REP_HEADER_LEN + 4 + name_len;
}

size_t nbdw_rep_err_encode(uint8_t *out, size_t cap, uint32_t option, uint32_t type,
                           const char *msg, size_t msg_len)
{
	if (!(type & NBD_REP_FLAG_ERROR) || !out_str_ok(msg, msg_len) ||
	    cap < NBDW_REP_HEADER_LEN + msg_len)
		return 0;
	nbdw_rep_header_encode(out, option, type, (uint32_t)msg_len);
	put_bytes(out + NBDW_REP_HEADER_LEN, msg, msg_len);
	return NBDW_REP_HEADER_LEN + msg_len;
}

size_t nbdw_export_name_reply_encode(uint8_t *out, size_t cap, uint64_t size, uint16_t tflags,
                                     bool no_zeroes)
{
	size_t n = no_zeroes ? NBDW_EXPORT_REPLY_SHORT : NBDW_EXPORT_REPLY_LEN;

	if (cap < n)
		return 0;
	wire_put64(out, size);
	wire_put16(out + 8, tflags);
	if (!no_zeroes)
		memset(out + NBDW_EXPORT_REPLY_SHORT, 0, NBDW_EXPORT_ZEROES);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Transmission: requests                                                 */
/* ---------------------------------------------------------------------- */

int nbdw_request_decode(const uint8_t *in, size_t len, struct nbdw_request *r)
{
	if (len != NBDW_REQUEST_LEN || wire_get32(in) != NBD_REQUEST_MAGIC)
		return NBDW_INVALID;
	r->flags = wire_get16(in + 4);
	r->type = wire_get16(in + 6);
	r->cookie = wire_get64(in + 8);
	r->offset = wire_get64(in + 16);
	r->length = wire_get32(in + 24);
	return 0;
}

void nbdw_request_encode(uint8_t out[NBDW_REQUEST_LEN], const struct nbdw_request *r)
{
	wire_put32(out, NBD_REQUEST_MAGIC);
	wire_put16(out + 4, r->flags);
	wire_put16(out + 6, r->type);
	wire_put64(out + 8, r->cookie);
	wire_put64(out + 16, r->offset);
	wire_put32(out + 24, r->length);
}

uint32_t nbdw_request_payload_len(const struct nbdw_request *r)
{
	return r->type == NBD_CMD_WRITE ? r->length : 0;
}

/*
 * Is the command one we serve under these limits? The spec: "The server
 * SHOULD return NBD_EINVAL if it receives an unknown command"; a command
 * whose NBD_FLAG_SEND_* we did not set is one the client "MUST NOT" send,
 * and we answer it as unknown. BLOCK_STATUS: "Servers SHOULD reply with
 * NBD_EINVAL to clients sending NBD_CMD_BLOCK_STATUS without selecting at
 * least one metadata context".
 */
static int cmd_allowed(uint16_t type, const struct nbdw_limits *lim)
{
	switch (type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
	case NBD_CMD_DISC:
		return 1;
	case NBD_CMD_FLUSH:
		return (lim->tflags & NBD_FLAG_SEND_FLUSH) != 0;
	case NBD_CMD_TRIM:
		return (lim->tflags & NBD_FLAG_SEND_TRIM) != 0;
	case NBD_CMD_CACHE:
		return (lim->tflags & NBD_FLAG_SEND_CACHE) != 0;
	case NBD_CMD_WRITE_ZEROES:
		return (lim->tflags & NBD_FLAG_SEND_WRITE_ZEROES) != 0;
	case NBD_CMD_BLOCK_STATUS:
		return lim->structured && lim->meta_base_allocation != 0;
	default:
		return 0;
	}
}

/*
 * The command flags valid for this command under these limits. The spec:
 * "SHOULD return NBD_EINVAL if it receives an unknown command flag [or] a
 * request with a flag not explicitly documented as applicable to the given
 * request". FUA "is valid for all commands, provided NBD_FLAG_SEND_FUA has
 * been negotiated, in which case the server MUST accept all commands with
 * this bit set" (clients are known to set it on reads), so it is allowed on
 * every command when advertised and on none otherwise. DF needs
 * NBD_FLAG_SEND_DF, which we may only set with structured replies; FAST_ZERO
 * needs NBD_FLAG_SEND_FAST_ZERO ("SHOULD fail with NBD_EINVAL" otherwise).
 */
static uint16_t cmd_flags_allowed(uint16_t type, const struct nbdw_limits *lim)
{
	uint16_t ok = (lim->tflags & NBD_FLAG_SEND_FUA) ? NBD_CMD_FLAG_FUA : 0;

	switch (type) {
	case NBD_CMD_READ:
		if ((lim->tflags & NBD_FLAG_SEND_DF) && lim->structured)
			ok |= NBD_CMD_FLAG_DF;
		break;
	case NBD_CMD_WRITE_ZEROES:
		ok |= NBD_CMD_FLAG_NO_HOLE;
		if (lim->tflags & NBD_FLAG_SEND_FAST_ZERO)
			ok |= NBD_CMD_FLAG_FAST_ZERO;
		break;
	case NBD_CMD_BLOCK_STATUS:
		ok |= NBD_CMD_FLAG_REQ_ONE;
		break;
	default:
		break;
	}
	return ok;
}

int nbdw_request_check(const struct nbdw_request *r, const struct nbdw_limits *lim)
{
	uint16_t t = r->type;

	/* 1, 2: command and flags. */
	if (!cmd_allowed(t, lim))
		return NBD_EINVAL;
	if (r->flags & ~cmd_flags_allowed(t, lim))
		return NBD_EINVAL;

	/* 3: "it SHOULD return NBD_EPERM if it receives a write or trim request on a
	 * read-only export", and likewise for write zeroes. */
	int writes = t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES || t == NBD_CMD_TRIM;
	if (writes && (lim->tflags & NBD_FLAG_READ_ONLY))
		return NBD_EPERM;

	/* 4: DISC and FLUSH: "length and offset ... MUST be zero". */
	if (t == NBD_CMD_DISC || t == NBD_CMD_FLUSH)
		return r->offset == 0 && r->length == 0 ? 0 : NBD_EINVAL;

	/*
	 * Length 0: the spec calls a zero-length READ, WRITE, TRIM, WRITE_ZEROES
	 * or BLOCK_STATUS "unspecified" and only asks that the server not
	 * disconnect. We answer NBD_EINVAL: nothing useful can be done, and a
	 * BLOCK_STATUS reply could not even be formed (descriptors are nonzero).
	 */
	if (r->length == 0)
		return NBD_EINVAL;

	/* 5: the range must be representable. */
	if (r->offset > UINT64_MAX - r->length)
		return NBD_EINVAL;
	uint64_t end = r->offset + r->length;

	/* 6: "SHOULD report an NBD_EINVAL error if the client's request is not aligned
	 * to advertised minimum block size boundaries". */
	uint32_t mb = lim->min_block ? lim->min_block : 1;
	if (r->offset % mb != 0 || r->length % mb != 0)
		return NBD_EINVAL;

	/*
	 * 7: READ and WRITE move their length as payload. Above the advertised
	 * maximum block size the spec says the server "SHOULD report an
	 * NBD_EINVAL error", and that it "SHOULD NOT return NBD_EOVERFLOW except
	 * ... NBD_CMD_READ when NBD_CMD_FLAG_DF" is used, so EINVAL for both.
	 * TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS carry no payload and are
	 * served piecewise, so their length is not bounded here.
	 */
	if ((t == NBD_CMD_READ || t == NBD_CMD_WRITE) && r->length > lim->max_payload)
		return NBD_EINVAL;

	/*
	 * 8: beyond the end. The spec's "Error values": "SHOULD return NBD_ENOSPC if
	 * it receives a write request including one or more sectors beyond the
	 * size of the device" and "NBD_EINVAL if it receives a read or trim
	 * request" beyond it; under NBD_CMD_WRITE_ZEROES: "SHOULD return
	 * NBD_ENOSPC"; under NBD_CMD_BLOCK_STATUS: "SHOULD return NBD_EINVAL".
	 * CACHE is not named; it reads, so EINVAL.
	 */
	if (end > lim->export_size)
		return t == NBD_CMD_WRITE || t == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Transmission: replies                                                  */
/* ---------------------------------------------------------------------- */

void nbdw_simple_reply_encode(uint8_t out[NBDW_SIMPLE_REPLY_LEN], uint32_t error, uint64_t cookie)
{
	wire_put32(out, NBD_SIMPLE_REPLY_MAGIC);
	wire_put32(out + 4, error);
	wire_put64(out + 8, cookie);
}

void nbdw_chunk_header_encode(uint8_t out[NBDW_CHUNK_HEADER_LEN], uint16_t flags, uint16_t type,
                              uint64_t cookie, uint32_t len)
{
	wire_put32(out, NBD_STRUCTURED_REPLY_MAGIC);
	wire_put16(out + 4, flags);
	wire_put16(out + 6, type);
	wire_put64(out + 8, cookie);
	wire_put32(out + 16, len);
}

void nbdw_chunk_none_encode(uint8_t out[NBDW_CHUNK_HEADER_LEN], uint64_t cookie)
{
	nbdw_chunk_header_encode(out, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, cookie, 0);
}

size_t nbdw_chunk_offset_data_hdr_encode(uint8_t out[NBDW_OFFSET_DATA_HDR_LEN], uint16_t flags,
                                         uint64_t cookie, uint64_t offset, uint32_t data_len)
{
	/* "length MUST be at least 9": at least one byte of data after the offset. */
	if (data_len == 0 || data_len > UINT32_MAX - 8)
		return 0;
	nbdw_chunk_header_encode(out, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie, 8 + data_len);
	wire_put64(out + NBDW_CHUNK_HEADER_LEN, offset);
	return NBDW_OFFSET_DATA_HDR_LEN;
}

size_t nbdw_chunk_offset_hole_encode(uint8_t out[NBDW_OFFSET_HOLE_LEN], uint16_t flags,
                                     uint64_t cookie, uint64_t offset, uint32_t hole_size)
{
	if (hole_size == 0) /* "hole size (unsigned, MUST be nonzero)" */
		return 0;
	nbdw_chunk_header_encode(out, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, 8 + 4);
	wire_put64(out + NBDW_CHUNK_HEADER_LEN, offset);
	wire_put32(out + NBDW_CHUNK_HEADER_LEN + 8, hole_size);
	return NBDW_OFFSET_HOLE_LEN;
}

size_t nbdw_chunk_block_status_hdr_encode(uint8_t out[NBDW_BLOCK_STATUS_HDR_LEN], uint16_t flags,
                                          uint64_t cookie, uint32_t ctx_id, uint32_t n_desc)
{
	/* "length MUST be 4 + (a positive integer multiple of 8)". */
	if (n_desc == 0 || n_desc > (UINT32_MAX - 4) / NBDW_BLOCK_DESC_LEN)
		return 0;
	nbdw_chunk_header_encode(out, flags, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
	                         4 + n_desc * NBDW_BLOCK_DESC_LEN);
	wire_put32(out + NBDW_CHUNK_HEADER_LEN, ctx_id);
	return NBDW_BLOCK_STATUS_HDR_LEN;
}

size_t nbdw_block_desc_encode(uint8_t out[NBDW_BLOCK_DESC_LEN], uint32_t length, uint32_t status)
{
	if (length == 0) /* "length of the extent ... MUST be nonzero" */
		return 0;
	wire_put32(out, length);
	wire_put32(out + 4, status);
	return NBDW_BLOCK_DESC_LEN;
}

/* Shared by both error chunk types; `tail` bytes of structured fields follow the message. */
static size_t chunk_error(uint8_t *out, size_t cap, uint16_t flags, uint16_t type, uint64_t cookie,
                          uint32_t error, const char *msg, size_t msg_len, size_t tail)
{
	if (error == 0 || !out_str_ok(msg, msg_len))
		return 0;
	size_t plen = 4 + 2 + msg_len + tail;
	if (cap < NBDW_CHUNK_HEADER_LEN + plen)
		return 0;
	nbdw_chunk_header_encode(out, flags, type, cookie, (uint32_t)plen);
	wire_put32(out + NBDW_CHUNK_HEADER_LEN, error);
	wire_put16(out + NBDW_CHUNK_HEADER_LEN + 4, (uint16_t)msg_len);
	put_bytes(out + NBDW_ERROR_CHUNK_HDR_LEN, msg, msg_len);
	return NBDW_CHUNK_HEADER_LEN + plen;
}

size_t nbdw_chunk_error_encode(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                               uint32_t error, const char *msg, size_t msg_len)
{
	return chunk_error(out, cap, flags, NBD_REPLY_TYPE_ERROR, cookie, error, msg, msg_len, 0);
}

size_t nbdw_chunk_error_offset_encode(uint8_t *out, size_t cap, uint16_t flags, uint64_t cookie,
                                      uint32_t error, const char *msg, size_t msg_len,
                                      uint64_t offset)
{
	size_t n = chunk_error(out, cap, flags, NBD_REPLY_TYPE_ERROR_OFFSET, cookie, error, msg,
	                       msg_len, 8);
	if (n)
		wire_put64(out + NBDW_ERROR_CHUNK_HDR_LEN + msg_len, offset);
	return n;
}

/* ---------------------------------------------------------------------- */
/* Names for logs                                                         */
/* ---------------------------------------------------------------------- */

#define NAME_OF(table, v)                                                                          \
	((v) < sizeof(table) / sizeof((table)[0]) && (table)[v] ? (table)[v] : "unknown")

const char *nbdw_opt_name(uint32_t option)
{
	static const char *const names[] = {
	    [NBD_OPT_EXPORT_NAME] = "NBD_OPT_EXPORT_NAME",
	    [NBD_OPT_ABORT] = "NBD_OPT_ABORT",
	    [NBD_OPT_LIST] = "NBD_OPT_LIST",
	    [NBD_OPT_PEEK_EXPORT] = "NBD_OPT_PEEK_EXPORT",
	    [NBD_OPT_STARTTLS] = "NBD_OPT_STARTTLS",
	    [NBD_OPT_INFO] = "NBD_OPT_INFO",
	    [NBD_OPT_GO] = "NBD_OPT_GO",
	    [NBD_OPT_STRUCTURED_REPLY] = "NBD_OPT_STRUCTURED_REPLY",
	    [NBD_OPT_LIST_META_CONTEXT] = "NBD_OPT_LIST_META_CONTEXT",
	    [NBD_OPT_SET_META_CONTEXT] = "NBD_OPT_SET_META_CONTEXT",
	    [NBD_OPT_EXTENDED_HEADERS] = "NBD_OPT_EXTENDED_HEADERS",
	};
	return NAME_OF(names, option);
}

const char *nbdw_rep_name(uint32_t type)
{
	static const char *const names[] = {
	    [NBD_REP_ACK] = "NBD_REP_ACK",
	    [NBD_REP_SERVER] = "NBD_REP_SERVER",
	    [NBD_REP_INFO] = "NBD_REP_INFO",
	    [NBD_REP_META_CONTEXT] = "NBD_REP_META_CONTEXT",
	};
	static const char *const errs[] = {
	    [NBD_REP_ERR_UNSUP - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_UNSUP",
	    [NBD_REP_ERR_POLICY - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_POLICY",
	    [NBD_REP_ERR_INVALID - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_INVALID",
	    [NBD_REP_ERR_PLATFORM - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_PLATFORM",
	    [NBD_REP_ERR_TLS_REQD - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_TLS_REQD",
	    [NBD_REP_ERR_UNKNOWN - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_UNKNOWN",
	    [NBD_REP_ERR_SHUTDOWN - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_SHUTDOWN",
	    [NBD_REP_ERR_BLOCK_SIZE_REQD - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_BLOCK_SIZE_REQD",
	    [NBD_REP_ERR_TOO_BIG - NBD_REP_FLAG_ERROR] = "NBD_REP_ERR_TOO_BIG",
	};
	if (type & NBD_REP_FLAG_ERROR) {
		uint32_t e = type - NBD_REP_FLAG_ERROR;
		return NAME_OF(errs, e);
	}
	return NAME_OF(names, type);
}

const char *nbdw_info_name(uint16_t info)
{
	static const char *const names[] = {
	    [NBD_INFO_EXPORT] = "NBD_INFO_EXPORT",
	    [NBD_INFO_NAME] = "NBD_INFO_NAME",
	    [NBD_INFO_DESCRIPTION] = "NBD_INFO_DESCRIPTION",
	    [NBD_INFO_BLOCK_SIZE] = "NBD_INFO_BLOCK_SIZE",
	};
	return NAME_OF(names, info);
}

const char *nbdw_cmd_name(uint16_t type)
{
	static const char *const names[] = {
	    [NBD_CMD_READ] = "NBD_CMD_READ",
	    [NBD_CMD_WRITE] = "NBD_CMD_WRITE",
	    [NBD_CMD_DISC] = "NBD_CMD_DISC",
	    [NBD_CMD_FLUSH] = "NBD_CMD_FLUSH",
	    [NBD_CMD_TRIM] = "NBD_CMD_TRIM",
	    [NBD_CMD_CACHE] = "NBD_CMD_CACHE",
	    [NBD_CMD_WRITE_ZEROES] = "NBD_CMD_WRITE_ZEROES",
	    [NBD_CMD_BLOCK_STATUS] = "NBD_CMD_BLOCK_STATUS",
	    [NBD_CMD_RESIZE] = "NBD_CMD_RESIZE",
	};
	return NAME_OF(names, type);
}

const char *nbdw_reply_type_name(uint16_t type)
{
	switch (type) {
	case NBD_REPLY_TYPE_NONE:
		return "NBD_REPLY_TYPE_NONE";
	case NBD_REPLY_TYPE_OFFSET_DATA:
		return "NBD_REPLY_TYPE_OFFSET_DATA";
	case NBD_REPLY_TYPE_OFFSET_HOLE:
		return "NBD_REPLY_TYPE_OFFSET_HOLE";
	case NBD_REPLY_TYPE_BLOCK_STATUS:
		return "NBD_REPLY_TYPE_BLOCK_STATUS";
	case NBD_REPLY_TYPE_ERROR:
		return "NBD_REPLY_TYPE_ERROR";
	case NBD_REPLY_TYPE_ERROR_OFFSET:
		return "NBD_REPLY_TYPE_ERROR_OFFSET";
	default:
		return "unknown";
	}
}

const char *nbdw_err_name(uint32_t error)
{
	switch (error) {
	case 0:
		return "OK";
	case NBD_EPERM:
		return "NBD_EPERM";
	case NBD_EIO:
		return "NBD_EIO";
	case NBD_ENOMEM:
		return "NBD_ENOMEM";
	case NBD_EINVAL:
		return "NBD_EINVAL";
	case NBD_ENOSPC:
		return "NBD_ENOSPC";
	case NBD_EOVERFLOW:
		return "NBD_EOVERFLOW";
	case NBD_ENOTSUP:
		return "NBD_ENOTSUP";
	case NBD_ESHUTDOWN:
		return "NBD_ESHUTDOWN";
	default:
		return "unknown";
	}
}
