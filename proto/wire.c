/* SPDX-License-Identifier: ISC */
/*
 * wire: the p2pvbd peer protocol codec, version 1 (see proto/PROTOCOL.md).
 *
 * Pure code: no I/O, no allocation, no globals, no logging. Decoders are
 * strict (exact lengths, reserved bits zero, no trailing bytes) because a
 * lenient decoder is where two implementations start to disagree, and
 * because every byte here comes from the network before anything else has
 * checked it. Encoders validate with the same rules, so that we never send
 * what we would refuse to receive.
 */
#include <string.h>

#include "wire.h"

/* Fixed body sizes (after the type byte). */
#define AUTH_BODY      (WIRE_KEY_LEN + 4 + WIRE_SIG_LEN) /* identity, flags, sig */
#define TEXT_HDR       4                                 /* u16 code, u16 text_len */
#define GET_PAGE_BODY  4                                 /* u32 page */
#define PAGE_HDR       (4 + 8)                           /* u32 page, u64 root_gen */
#define PAGE_ENTRY_LEN WIRE_PAGE_ENTRY_LEN
#define PAGE_MAX_ENTRY WIRE_PAGE_MAX_ENTRIES
#define HAVE_MAP_HDR   (4 + 4)         /* u32 first, u32 count */
#define HAVE_BODY      (4 + 8)         /* u32 chunk, u64 gen */
#define BLOCK_BODY     (4 + 8 + 4 + 4) /* chunk, gen, offset, length */
#define REQUEST_BODY   (BLOCK_BODY + 1)
#define REJECT_BODY    (BLOCK_BODY + 2)
#define PIECE_HDR_BODY (4 + 8 + 4) /* chunk, gen, offset; data follows */
#define REFUSE_HDR_LEN (WIRE_MAGIC_LEN + 4)

/* Largest have-map that fits one message: every remaining byte is bitmap. */
#define HAVE_MAP_MAX_BITS ((uint64_t)(WIRE_MAX_MSG - 1 - HAVE_MAP_HDR) * 8u)

_Static_assert(1 + PIECE_HDR_BODY == WIRE_PIECE_HDR_LEN, "PIECE header length");
_Static_assert(1 + PAGE_HDR + PAGE_MAX_ENTRY * PAGE_ENTRY_LEN <= WIRE_MAX_MSG,
               "a full page must fit one message");
_Static_assert(1 + PIECE_HDR_BODY + WIRE_MAX_BLOCK <= WIRE_MAX_MSG,
               "a full block must fit one message");

void wire_hello_encode(const struct wire_hello *h, uint8_t out[WIRE_HELLO_LEN])
{
	memcpy(out, WIRE_HELLO_MAGIC, WIRE_MAGIC_LEN);
	wire_put16(out + 8, h->min_version);
	wire_put16(out + 10, h->max_version);
	wire_put32(out + 12, h->flags);
	memcpy(out + 16, h->volume_id, WIRE_ID_LEN);
	memcpy(out + 32, h->source_key, WIRE_KEY_LEN);
	memcpy(out + 64, h->kx_key, WIRE_KEY_LEN);
}

/*
 * Only structure is checked here (length, magic, reserved flags). Whether
 * the version range, volume and key are acceptable is the caller's decision,
 * because each mismatch has its own refusal code.
 */
int wire_hello_decode(const uint8_t *in, size_t len, struct wire_hello *h)
{
	if (len != WIRE_HELLO_LEN || memcmp(in, WIRE_HELLO_MAGIC, WIRE_MAGIC_LEN) != 0)
		return WIRE_INVALID;
	h->min_version = wire_get16(in + 8);
	h->max_version = wire_get16(in + 10);
	h->flags = wire_get32(in + 12);
	if (h->flags != 0)
		return WIRE_INVALID;
	memcpy(h->volume_id, in + 16, WIRE_ID_LEN);
	memcpy(h->source_key, in + 32, WIRE_KEY_LEN);
	memcpy(h->kx_key, in + 64, WIRE_KEY_LEN);
	return 0;
}

/*
 * Length of the longest prefix of s[0..len) that does not end inside a
 * UTF-8 sequence, so that truncating a reason never leaves half a character.
 */
static size_t utf8_cut(const char *s, size_t len)
{
	size_t i = len;

	/* Step back over at most 3 continuation bytes to the lead byte. */
	while (i > 0 && len - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return len; /* not UTF-8 anyway: keep the bytes as they are */
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need;
	if (lead < 0x80)
		return len;
	else if ((lead & 0xe0) == 0xc0)
		need = 2;
	else if ((lead & 0xf0) == 0xe0)
		need = 3;
	else if ((lead & 0xf8) == 0xf0)
		need = 4;
	else
		return len;
	/* The sequence starting at i - 1 has len - (i - 1) bytes. */
	return len - (i - 1) >= need ? len : i - 1;
}

size_t wire_refuse_encode(uint16_t code, const char *text, uint8_t *out, size_t cap)
{
	size_t tlen = text ? strlen(text) : 0;

	if (tlen > WIRE_MAX_TEXT)
		tlen = utf8_cut(text, WIRE_MAX_TEXT);
	if (cap < REFUSE_HDR_LEN + tlen)
		return 0;
	memcpy(out, WIRE_REFUSE_MAGIC, WIRE_MAGIC_LEN);
	wire_put16(out + 8, code);
	wire_put16(out + 10, (uint16_t)tlen);
	if (tlen)
		memcpy(out + REFUSE_HDR_LEN, text, tlen);
	return REFUSE_HDR_LEN + tlen;
}

/*
 * A refusal arrives where a hello was expected, so the caller may hold only
 * part of it: say NEED_MORE until it is whole, but reject a wrong magic or an
 * oversized text as soon as those bytes are present. Bytes after the record
 * are not ours to judge (the return value says where it ended).
 */
int wire_refuse_decode(const uint8_t *in, size_t len, uint16_t *code, const char **text,
                       uint16_t *text_len)
{
	size_t m = len < WIRE_MAGIC_LEN ? len : WIRE_MAGIC_LEN;

	if (memcmp(in, WIRE_REFUSE_MAGIC, m) != 0)
		return WIRE_INVALID;
	if (len < REFUSE_HDR_LEN)
		return WIRE_NEED_MORE;
	uint16_t tlen = wire_get16(in + 10);
	if (tlen > WIRE_MAX_TEXT)
		return WIRE_INVALID;
	if (len < REFUSE_HDR_LEN + (size_t)tlen)
		return WIRE_NEED_MORE;
	*code = wire_get16(in + 8);
	*text_len = tlen;
	*text = (const char *)in + REFUSE_HDR_LEN;
	return (int)(REFUSE_HDR_LEN + tlen);
}

int64_t wire_frame_len(const uint8_t hdr[WIRE_FRAME_HDR_LEN])
{
	uint32_t l = wire_get32(hdr);

	/* At least a type byte plus the tag; at most the largest message plus the tag. */
	if (l < WIRE_TAG_LEN + 1 || l > WIRE_MAX_MSG + WIRE_TAG_LEN)
		return WIRE_INVALID;
	return l;
}

/* offset + length must be representable: a block never wraps past 2^32 - 1. */
static int range_ok(uint32_t offset, uint32_t length)
{
	return (uint64_t)offset + length <= UINT32_MAX;
}

static int block_len_ok(uint32_t length)
{
	return length >= 1 && length <= WIRE_MAX_BLOCK;
}

static int block_ok(const struct wire_block *b)
{
	return block_len_ok(b->length) && range_ok(b->offset, b->length);
}

static uint64_t bitmap_bytes(uint32_t count)
{
	return ((uint64_t)count + 7) / 8;
}

/* The bits past `count` in the last byte must be zero, so each map has one encoding. */
static int bitmap_tail_ok(const uint8_t *bits, uint32_t count)
{
	unsigned used = count % 8;

	if (used == 0)
		return 1;
	return (bits[count / 8] & (uint8_t)(0xffu << used)) == 0;
}

static void get_block(const uint8_t *p, struct wire_block *b)
{
	b->chunk = wire_get32(p);
	b->gen = wire_get64(p + 4);
	b->offset = wire_get32(p + 12);
	b->length = wire_get32(p + 16);
}

static void put_block(uint8_t *p, const struct wire_block *b)
{
	wire_put32(p, b->chunk);
	wire_put64(p + 4, b->gen);
	wire_put32(p + 12, b->offset);
	wire_put32(p + 16, b->length);
}

/* An ERROR may name the chunk that failed verification; nothing else may (§6.2). */
static int may_name_chunk(uint8_t type, uint16_t code)
{
	return type == WIRE_ERROR && code == WIRE_E_BAD_DATA;
}

/* ERROR and RECEIPT_ACK share a body (m->type is set). */
static int decode_text(const uint8_t *b, size_t blen, struct wire_msg *m)
{
	size_t end;

	if (blen < TEXT_HDR)
		return WIRE_INVALID;
	m->u.error.code = wire_get16(b);
	m->u.error.text_len = wire_get16(b + 2);
	if (m->u.error.text_len > WIRE_MAX_TEXT)
		return WIRE_INVALID;
	end = TEXT_HDR + (size_t)m->u.error.text_len;
	if (blen == end + WIRE_ERROR_CHUNK_LEN && may_name_chunk(m->type, m->u.error.code)) {
		m->u.error.has_chunk = 1;
		m->u.error.chunk = wire_get32(b + end);
		m->u.error.gen = wire_get64(b + end + 4);
	} else if (blen != end) {
		return WIRE_INVALID;
	}
	m->u.error.text = (const char *)b + TEXT_HDR;
	return 0;
}

int wire_msg_decode(const uint8_t *in, size_t len, struct wire_msg *m)
{
	if (len < 1 || len > WIRE_MAX_MSG)
		return WIRE_INVALID;
	memset(m, 0, sizeof(*m));
	m->type = in[0];

	/* b/blen: the body after the type byte. */
	const uint8_t *b = in + 1;
	size_t blen = len - 1;

	switch (m->type) {
	case WIRE_AUTH:
		if (blen != AUTH_BODY)
			return WIRE_INVALID;
		memcpy(m->u.auth.identity, b, WIRE_KEY_LEN);
		m->u.auth.flags = wire_get32(b + WIRE_KEY_LEN);
		memcpy(m->u.auth.sig, b + WIRE_KEY_LEN + 4, WIRE_SIG_LEN);
		if (m->u.auth.flags & ~WIRE_AUTH_SOURCE)
			return WIRE_INVALID;
		return 0;
	case WIRE_ERROR:
	case WIRE_RECEIPT_ACK:
		return decode_text(b, blen, m);
	case WIRE_KEEPALIVE:
	case WIRE_GET_ROOT:
		return blen == 0 ? 0 : WIRE_INVALID;
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		if (blen < 1)
			return WIRE_INVALID;
		m->u.blob.data = b;
		m->u.blob.len = (uint32_t)blen;
		return 0;
	case WIRE_GET_PAGE:
		if (blen != GET_PAGE_BODY)
			return WIRE_INVALID;
		m->u.get_page.page = wire_get32(b);
		return 0;
	case WIRE_PAGE: {
		if (blen < PAGE_HDR + PAGE_ENTRY_LEN)
			return WIRE_INVALID;
		size_t elen = blen - PAGE_HDR;
		if (elen % PAGE_ENTRY_LEN != 0 || elen / PAGE_ENTRY_LEN > PAGE_MAX_ENTRY)
			return WIRE_INVALID;
		m->u.page.page = wire_get32(b);
		m->u.page.root_gen = wire_get64(b + 4);
		m->u.page.data = b + PAGE_HDR;
		m->u.page.len = (uint32_t)elen;
		return 0;
	}
	case WIRE_HAVE_MAP: {
		if (blen < HAVE_MAP_HDR)
			return WIRE_INVALID;
		uint32_t first = wire_get32(b);
		uint32_t count = wire_get32(b + 4);
		if (count == 0 || (uint64_t)first + count > UINT32_MAX)
			return WIRE_INVALID;
		if (blen - HAVE_MAP_HDR != bitmap_bytes(count))
			return WIRE_INVALID;
		if (!bitmap_tail_ok(b + HAVE_MAP_HDR, count))
			return WIRE_INVALID;
		m->u.have_map.first = first;
		m->u.have_map.count = count;
		m->u.have_map.bits = b + HAVE_MAP_HDR;
		return 0;
	}
	case WIRE_HAVE:
		if (blen != HAVE_BODY)
			return WIRE_INVALID;
		m->u.have.chunk = wire_get32(b);
		m->u.have.gen = wire_get64(b + 4);
		return 0;
	case WIRE_REQUEST:
		if (blen != REQUEST_BODY)
			return WIRE_INVALID;
		get_block(b, &m->u.request.blk);
		m->u.request.prio = b[BLOCK_BODY];
		if (!block_ok(&m->u.request.blk) || m->u.request.prio > WIRE_PRIO_URGENT)
			return WIRE_INVALID;
		return 0;
	case WIRE_PIECE: {
		if (blen < PIECE_HDR_BODY + 1 || blen > PIECE_HDR_BODY + WIRE_MAX_BLOCK)
			return WIRE_INVALID;
		uint32_t dlen = (uint32_t)(blen - PIECE_HDR_BODY);
		m->u.piece.chunk = wire_get32(b);
		m->u.piece.gen = wire_get64(b + 4);
		m->u.piece.offset = wire_get32(b + 12);
		m->u.piece.data = b + PIECE_HDR_BODY;
		m->u.piece.len = dlen;
		if (!range_ok(m->u.piece.offset, dlen))
			return WIRE_INVALID;
		return 0;
	}
	case WIRE_CANCEL:
		if (blen != BLOCK_BODY)
			return WIRE_INVALID;
		get_block(b, &m->u.cancel);
		return block_ok(&m->u.cancel) ? 0 : WIRE_INVALID;
	case WIRE_REJECT:
		if (blen != REJECT_BODY)
			return WIRE_INVALID;
		get_block(b, &m->u.reject.blk);
		m->u.reject.code = wire_get16(b + BLOCK_BODY);
		return block_ok(&m->u.reject.blk) ? 0 : WIRE_INVALID;
	default:
		return WIRE_INVALID; /* type 0 and anything above WIRE_TYPE_MAX */
	}
}

/*
 * The encoded size, applying the decoder's rules to m so that every message
 * we can encode is one the peer can decode. 0 if m is invalid.
 */
size_t wire_msg_size(const struct wire_msg *m)
{
	size_t n;

	switch (m->type) {
	case WIRE_AUTH:
		if (m->u.auth.flags & ~WIRE_AUTH_SOURCE)
			return 0;
		return 1 + AUTH_BODY;
	case WIRE_ERROR:
	case WIRE_RECEIPT_ACK:
		if (m->u.error.text_len > WIRE_MAX_TEXT ||
		    (m->u.error.text_len && !m->u.error.text) ||
		    (m->u.error.has_chunk && !may_name_chunk(m->type, m->u.error.code)))
			return 0;
		return 1 + TEXT_HDR + (size_t)m->u.error.text_len +
		       (m->u.error.has_chunk ? WIRE_ERROR_CHUNK_LEN : 0);
	case WIRE_KEEPALIVE:
	case WIRE_GET_ROOT:
		return 1;
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		if (m->u.blob.len < 1 || !m->u.blob.data || m->u.blob.len > WIRE_MAX_MSG - 1)
			return 0;
		return 1 + (size_t)m->u.blob.len;
	case WIRE_GET_PAGE:
		return 1 + GET_PAGE_BODY;
	case WIRE_PAGE:
		if (!m->u.page.data || m->u.page.len < PAGE_ENTRY_LEN ||
		    m->u.page.len % PAGE_ENTRY_LEN != 0 ||
		    m->u.page.len / PAGE_ENTRY_LEN > PAGE_MAX_ENTRY)
			return 0;
		return 1 + PAGE_HDR + (size_t)m->u.page.len;
	case WIRE_HAVE_MAP:
		if (m->u.have_map.count == 0 || !m->u.have_map.bits ||
		    (uint64_t)m->u.have_map.first + m->u.have_map.count > UINT32_MAX ||
		    m->u.have_map.count > HAVE_MAP_MAX_BITS ||
		    !bitmap_tail_ok(m->u.have_map.bits, m->u.have_map.count))
			return 0;
		return 1 + HAVE_MAP_HDR + (size_t)bitmap_bytes(m->u.have_map.count);
	case WIRE_HAVE:
		return 1 + HAVE_BODY;
	case WIRE_REQUEST:
		if (!block_ok(&m->u.request.blk) || m->u.request.prio > WIRE_PRIO_URGENT)
			return 0;
		return 1 + REQUEST_BODY;
	case WIRE_PIECE:
		n = m->u.piece.len;
		if (!m->u.piece.data || !block_len_ok(m->u.piece.len) ||
		    !range_ok(m->u.piece.offset, m->u.piece.len))
			return 0;
		return 1 + PIECE_HDR_BODY + n;
	case WIRE_CANCEL:
		return block_ok(&m->u.cancel) ? 1 + BLOCK_BODY : 0;
	case WIRE_REJECT:
		return block_ok(&m->u.reject.blk) ? 1 + REJECT_BODY : 0;
	default:
		return 0;
	}
}

size_t wire_msg_encode(const struct wire_msg *m, uint8_t *out, size_t cap)
{
	size_t n = wire_msg_size(m);

	if (n == 0 || n > cap)
		return 0;
	out[0] = m->type;
	uint8_t *b = out + 1;

	switch (m->type) {
	case WIRE_AUTH:
		memcpy(b, m->u.auth.identity, WIRE_KEY_LEN);
		wire_put32(b + WIRE_KEY_LEN, m->u.auth.flags);
		memcpy(b + WIRE_KEY_LEN + 4, m->u.auth.sig, WIRE_SIG_LEN);
		break;
	case WIRE_ERROR:
	case WIRE_RECEIPT_ACK:
		wire_put16(b, m->u.error.code);
		wire_put16(b + 2, m->u.error.text_len);
		if (m->u.error.text_len)
			memcpy(b + TEXT_HDR, m->u.error.text, m->u.error.text_len);
		if (m->u.error.has_chunk) {
			wire_put32(b + TEXT_HDR + m->u.error.text_len, m->u.error.chunk);
			wire_put64(b + TEXT_HDR + m->u.error.text_len + 4, m->u.error.gen);
		}
		break;
	case WIRE_KEEPALIVE:
	case WIRE_GET_ROOT:
		break;
	case WIRE_ROOT:
	case WIRE_RECEIPT:
	case WIRE_DELTA:
		memcpy(b, m->u.blob.data, m->u.blob.len);
		break;
	case WIRE_GET_PAGE:
		wire_put32(b, m->u.get_page.page);
		break;
	case WIRE_PAGE:
		wire_put32(b, m->u.page.page);
		wire_put64(b + 4, m->u.page.root_gen);
		memcpy(b + PAGE_HDR, m->u.page.data, m->u.page.len);
		break;
	case WIRE_HAVE_MAP:
		wire_put32(b, m->u.have_map.first);
		wire_put32(b + 4, m->u.have_map.count);
		memcpy(b + HAVE_MAP_HDR, m->u.have_map.bits, bitmap_bytes(m->u.have_map.count));
		break;
	case WIRE_HAVE:
		wire_put32(b, m->u.have.chunk);
		wire_put64(b + 4, m->u.have.gen);
		break;
	case WIRE_REQUEST:
		put_block(b, &m->u.request.blk);
		b[BLOCK_BODY] = m->u.request.prio;
		break;
	case WIRE_PIECE:
		wire_put32(b, m->u.piece.chunk);
		wire_put64(b + 4, m->u.piece.gen);
		wire_put32(b + 12, m->u.piece.offset);
		memcpy(b + PIECE_HDR_BODY, m->u.piece.data, m->u.piece.len);
		break;
	case WIRE_CANCEL:
		put_block(b, &m->u.cancel);
		break;
	case WIRE_REJECT:
		put_block(b, &m->u.reject.blk);
		wire_put16(b + BLOCK_BODY, m->u.reject.code);
		break;
	}
	return n;
}

void wire_piece_hdr_encode(uint8_t out[WIRE_PIECE_HDR_LEN], uint32_t chunk, uint64_t gen,
                           uint32_t offset)
{
	out[0] = WIRE_PIECE;
	wire_put32(out + 1, chunk);
	wire_put64(out + 5, gen);
	wire_put32(out + 13, offset);
}

const char *wire_type_name(uint8_t type)
{
	static const char *const names[WIRE_TYPE_MAX + 1] = {
	    [WIRE_AUTH] = "AUTH",
	    [WIRE_ERROR] = "ERROR",
	    [WIRE_KEEPALIVE] = "KEEPALIVE",
	    [WIRE_GET_ROOT] = "GET_ROOT",
	    [WIRE_ROOT] = "ROOT",
	    [WIRE_GET_PAGE] = "GET_PAGE",
	    [WIRE_PAGE] = "PAGE",
	    [WIRE_HAVE_MAP] = "HAVE_MAP",
	    [WIRE_HAVE] = "HAVE",
	    [WIRE_REQUEST] = "REQUEST",
	    [WIRE_PIECE] = "PIECE",
	    [WIRE_CANCEL] = "CANCEL",
	    [WIRE_REJECT] = "REJECT",
	    [WIRE_RECEIPT] = "RECEIPT",
	    [WIRE_RECEIPT_ACK] = "RECEIPT_ACK",
	    [WIRE_DELTA] = "DELTA",
	};

	if (type > WIRE_TYPE_MAX || !names[type])
		return "UNKNOWN";
	return names[type];
}

const char *wire_code_name(uint16_t code)
{
	static const char *const names[] = {
	    [WIRE_OK] = "OK",
	    [WIRE_E_PROTOCOL] = "E_PROTOCOL",
	    [WIRE_E_VERSION] = "E_VERSION",
	    [WIRE_E_WRONG_VOLUME] = "E_WRONG_VOLUME",
	    [WIRE_E_WRONG_KEY] = "E_WRONG_KEY",
	    [WIRE_E_AUTH] = "E_AUTH",
	    [WIRE_E_RANGE] = "E_RANGE",
	    [WIRE_E_UNAVAILABLE] = "E_UNAVAILABLE",
	    [WIRE_E_GENERATION] = "E_GENERATION",
	    [WIRE_E_ZERO] = "E_ZERO",
	    [WIRE_E_BUSY] = "E_BUSY",
	    [WIRE_E_TIMEOUT] = "E_TIMEOUT",
	    [WIRE_E_BAD_RECEIPT] = "E_BAD_RECEIPT",
	    [WIRE_E_SHUTDOWN] = "E_SHUTDOWN",
	    [WIRE_E_INTERNAL] = "E_INTERNAL",
	    [WIRE_E_BAD_DATA] = "E_BAD_DATA",
	};

	if (code >= sizeof(names) / sizeof(names[0]) || !names[code])
		return "UNKNOWN";
	return names[code];
}
