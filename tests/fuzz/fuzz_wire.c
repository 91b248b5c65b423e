/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the wire codec: every decoder that reads bytes from
 * the network, plus the invariants that tie decoders and encoders together.
 *
 *   - wire_msg_decode: an accepted message re-encodes to exactly the input
 *     bytes (one encoding per message, an ERROR's optional chunk field
 *     included), and wire_msg_size agrees.
 *   - wire_hello_decode: an accepted hello re-encodes to the input.
 *   - wire_refuse_decode: an accepted refusal re-encodes to the record it
 *     consumed; NEED_MORE only for a strict prefix of something valid.
 *   - wire_frame_len: the result is either WIRE_INVALID or in range.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static void check_msg(const uint8_t *data, size_t size)
{
	struct wire_msg m;

	if (wire_msg_decode(data, size, &m) != 0)
		return;
	if (m.type < 1 || m.type > WIRE_TYPE_MAX || m.type != data[0])
		abort();
	size_t n = wire_msg_size(&m);
	if (n != size)
		abort();
	uint8_t *out = malloc(n);
	if (!out)
		return;
	if (wire_msg_encode(&m, out, n) != n || memcmp(out, data, n) != 0)
		abort();
	/* One byte short of room must be refused, not overrun. */
	if (wire_msg_encode(&m, out, n - 1) != 0)
		abort();
	free(out);
}

static void check_hello(const uint8_t *data, size_t size)
{
	struct wire_hello h;
	uint8_t out[WIRE_HELLO_LEN];

	if (wire_hello_decode(data, size, &h) != 0)
		return;
	if (size != WIRE_HELLO_LEN || h.flags != 0)
		abort();
	wire_hello_encode(&h, out);
	if (memcmp(out, data, WIRE_HELLO_LEN) != 0)
		abort();
}

static void check_refuse(const uint8_t *data, size_t size)
{
	uint16_t code, tlen;
	const char *text;
	uint8_t out[WIRE_MAGIC_LEN + 4 + WIRE_MAX_TEXT + 1];

	int rc = wire_refuse_decode(data, size, &code, &text, &tlen);
	if (rc == WIRE_NEED_MORE) {
		if (size >= WIRE_MAGIC_LEN + 4 + (size_t)WIRE_MAX_TEXT)
			abort(); /* that much is always enough to decide */
		return;
	}
	if (rc == WIRE_INVALID)
		return;
	if (rc < WIRE_MAGIC_LEN + 4 || (size_t)rc > size || tlen > WIRE_MAX_TEXT ||
	    (size_t)rc != WIRE_MAGIC_LEN + 4 + (size_t)tlen ||
	    (const uint8_t *)text != data + WIRE_MAGIC_LEN + 4)
		abort();
	/*
	 * Re-encode when the text has no NUL (the encoder takes a C string):
	 * the record must come back byte for byte.
	 */
	if (memchr(text, 0, tlen))
		return;
	char s[WIRE_MAX_TEXT + 1];
	memcpy(s, text, tlen);
	s[tlen] = 0;
	size_t n = wire_refuse_encode(code, s, out, sizeof(out));
	/*
	 * The encoder may shorten a text that ends in a cut UTF-8 sequence only
	 * when it is longer than the limit, which a decoded text never is.
	 */
	if (n != (size_t)rc || memcmp(out, data, n) != 0)
		abort();
}

static void check_frame(const uint8_t *data, size_t size)
{
	if (size < WIRE_FRAME_HDR_LEN)
		return;
	int64_t l = wire_frame_len(data);
	if (l == WIRE_INVALID)
		return;
	if (l < WIRE_TAG_LEN + 1 || l > (int64_t)WIRE_MAX_MSG + WIRE_TAG_LEN ||
	    (uint64_t)l != wire_get32(data))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/*
	 * Also try the input as a message whose type byte is forced to each
	 * known type, so that the fuzzer reaches every decoder without first
	 * having to guess the type.
	 */
	check_msg(data, size);
	if (size >= 2 && size <= WIRE_MAX_MSG) {
		uint8_t *copy = malloc(size);
		if (copy) {
			memcpy(copy, data, size);
			copy[0] = (uint8_t)(1 + data[0] % WIRE_TYPE_MAX);
			check_msg(copy, size);
			free(copy);
		}
	}
	/*
	 * A have-map whose count agrees with its length is too rare to find
	 * by mutation; make one from the input (count and tail bits fixed up)
	 * so the accepting path and its re-encoding are exercised too.
	 */
	if (size > 9 && size <= WIRE_MAX_MSG) {
		uint8_t *map = malloc(size);
		if (map) {
			memcpy(map, data, size);
			uint32_t count = (uint32_t)(size - 9) * 8 - (data[0] & 7);
			map[0] = WIRE_HAVE_MAP;
			wire_put32(map + 5, count);
			if (count % 8)
				map[size - 1] &= (uint8_t)((1u << (count % 8)) - 1);
			check_msg(map, size);
			free(map);
		}
	}
	/*
	 * Likewise an ERROR that names a chunk (E_BAD_DATA, text_len leaving
	 * exactly the chunk field): made from the input, so that the accepting
	 * path and its re-encoding run too.
	 */
	if (size >= 5 + WIRE_ERROR_CHUNK_LEN && size <= 5 + WIRE_MAX_TEXT + WIRE_ERROR_CHUNK_LEN) {
		uint8_t *e = malloc(size);
		if (e) {
			memcpy(e, data, size);
			e[0] = WIRE_ERROR;
			wire_put16(e + 1, WIRE_E_BAD_DATA);
			wire_put16(e + 3, (uint16_t)(size - 5 - WIRE_ERROR_CHUNK_LEN));
			check_msg(e, size);
			free(e);
		}
	}
	check_hello(data, size);
	check_refuse(data, size);
	check_frame(data, size);

	/* The same with each handshake magic in front, for the same reason. */
	uint8_t *pre = malloc(WIRE_MAGIC_LEN + size);
	if (pre) {
		memcpy(pre + WIRE_MAGIC_LEN, data, size);
		memcpy(pre, WIRE_HELLO_MAGIC, WIRE_MAGIC_LEN);
		check_hello(pre, WIRE_MAGIC_LEN + size);
		memcpy(pre, WIRE_REFUSE_MAGIC, WIRE_MAGIC_LEN);
		check_refuse(pre, WIRE_MAGIC_LEN + size);
		free(pre);
	}
	return 0;
}
