/* SPDX-License-Identifier: ISC */
/*
 * vcrypto: hashing, signatures, key files, session keys and AEAD, all on
 * top of libsodium. Nothing else in the project calls libsodium directly.
 */
#include "vcrypto.h"

#include "blake2b.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "util.h"
#include "wire.h"

/* The opaque state in the header must hold libsodium's, alignment included. */
_Static_assert(sizeof(struct vcrypto_hash_state) >= sizeof(crypto_generichash_state),
               "vcrypto_hash_state too small for crypto_generichash_state");
_Static_assert(_Alignof(struct vcrypto_hash_state) >= _Alignof(crypto_generichash_state),
               "vcrypto_hash_state under-aligned for crypto_generichash_state");
_Static_assert(VCRYPTO_HASH_LEN == crypto_generichash_BYTES, "hash length");
_Static_assert(VCRYPTO_PK_LEN == crypto_sign_PUBLICKEYBYTES, "Ed25519 public key length");
_Static_assert(VCRYPTO_SK_LEN == crypto_sign_SECRETKEYBYTES, "Ed25519 secret key length");
_Static_assert(VCRYPTO_SIG_LEN == crypto_sign_BYTES, "Ed25519 signature length");
_Static_assert(crypto_sign_SEEDBYTES == 32, "Ed25519 seed length");
_Static_assert(VCRYPTO_KEY_LEN == crypto_aead_chacha20poly1305_ietf_KEYBYTES, "AEAD key length");
_Static_assert(VCRYPTO_TAG_LEN == crypto_aead_chacha20poly1305_ietf_ABYTES, "AEAD tag length");
_Static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12, "AEAD nonce length");
_Static_assert(VCRYPTO_PK_LEN == crypto_kx_PUBLICKEYBYTES, "X25519 public key length");
_Static_assert(sizeof(((struct vcrypto_kx *)0)->sk) == crypto_kx_SECRETKEYBYTES, "X25519 sk");
_Static_assert(crypto_kx_SESSIONKEYBYTES == 32, "kx session key length");
_Static_assert(VCRYPTO_MAC_LEN >= crypto_generichash_BYTES_MIN &&
                   VCRYPTO_MAC_LEN <= crypto_generichash_BYTES_MAX &&
                   VCRYPTO_KEY_LEN >= crypto_generichash_KEYBYTES_MIN,
               "keyed BLAKE2b lengths");

#define SECRET_PREFIX "p2pvbd-secret-key-v1 "
#define PUBLIC_PREFIX "p2pvbd-public-key-v1 "
/* Both prefixes have the same length, so both files have the same size. */
#define KEYFILE_PREFIX_LEN (sizeof(SECRET_PREFIX) - 1)
#define KEYFILE_LEN        (KEYFILE_PREFIX_LEN + 64 + 1)

#define SESSION_LABEL "p2pvbd-v1-session" /* 17 bytes, no NUL, see PROTOCOL.md */

/* Set once by vcrypto_init: the portable BLAKE2b is faster on this CPU. */
static int hash_portable;
static void hash_calibrate(void);

int vcrypto_init(void)
{
	if (sodium_init() < 0) {
		log_error("vcrypto: libsodium initialisation failed");
		return -1;
	}
	if (getenv("P2PVBD_HASH") != NULL)
		hash_portable = strcmp(getenv("P2PVBD_HASH"), "portable") == 0;
	else
		hash_calibrate();
	return 0;
}

void vcrypto_identity_generate(struct vcrypto_identity *id)
{
	crypto_sign_keypair(id->pk, id->sk);
}

void vcrypto_identity_wipe(struct vcrypto_identity *id)
{
	sodium_memzero(id, sizeof(*id));
}

/*
 * Write all of buf to fd, retrying short writes and EINTR. 0 or -1 with
 * errno set.
 */
static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Read at most cap bytes from fd into buf until end of file; *got is the
 * count. Reading one byte more than a well-formed file holds lets the
 * caller tell "exact" from "trailing garbage" without trusting st_size.
 */
static int read_upto(int fd, uint8_t *buf, size_t cap, size_t *got)
{
	size_t n = 0;

	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*got = n;
	return 0;
}

/* Strictly lower-case hex, exactly 2n digits, into n bytes. */
static int hex_decode_lower(const uint8_t *in, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < 2 * n; i++) {
		uint8_t c = in[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return -1;
	}
	return hex_decode((const char *)in, 2 * n, out, n);
}

/*
 * Parse a key file's bytes: exactly prefix, 64 lower-case hex digits and one
 * newline, nothing else. 0 or -1.
 */
static int keyfile_parse(const uint8_t *buf, size_t len, const char *prefix, uint8_t out[32])
{
	if (len != KEYFILE_LEN)
		return -1;
	if (memcmp(buf, prefix, KEYFILE_PREFIX_LEN) != 0)
		return -1;
	if (buf[KEYFILE_LEN - 1] != '\n')
		return -1;
	return hex_decode_lower(buf + KEYFILE_PREFIX_LEN, out, 32);
}

/*
 * Read the public key file at path into pk. Returns 0, -1 on a malformed or
 * unreadable file (logged), or 1 if the file does not exist and missing_ok.
 */
static int pubfile_read(const char *path, uint8_t pk[VCRYPTO_PK_LEN], int missing_ok)
{
	uint8_t buf[KEYFILE_LEN + 1];
	size_t got;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && missing_ok)
			return 1;
		log_error("public key %s: %s", path, strerror(errno));
		return -1;
	}
	if (read_upto(fd, buf, sizeof(buf), &got) < 0) {
		log_error("public key %s: read: %s", path, strerror(errno));
		goto out;
	}
	if (keyfile_parse(buf, got, PUBLIC_PREFIX, pk) < 0) {
		log_error("public key %s: malformed (expected \"%s<64 lower-case hex digits>\" and "
		          "a newline)",
		          path, PUBLIC_PREFIX);
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

int vcrypto_pubkey_load(const char *path, uint8_t pk[VCRYPTO_PK_LEN])
{
	return pubfile_read(path, pk, 0);
}

int vcrypto_identity_load(const char *path, struct vcrypto_identity *id)
{
	uint8_t buf[KEYFILE_LEN + 1];
	uint8_t seed[crypto_sign_SEEDBYTES];
	uint8_t pub[VCRYPTO_PK_LEN];
	char *pubpath = NULL;
	struct stat st;
	size_t got = 0;
	int fd, rc = -1, prc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_error("secret key %s: %s", path, strerror(errno));
		return -1;
	}
	/* fstat on the open fd, not stat on the name, so that the file checked is the one read. */
	if (fstat(fd, &st) < 0) {
		log_error("secret key %s: fstat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		log_error("secret key %s: not a regular file", path);
		goto out;
	}
	if (st.st_mode & 077) {
		log_error("secret key %s: readable by group or others (mode %04o); chmod 600 %s",
		          path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if (read_upto(fd, buf, sizeof(buf), &got) < 0) {
		log_error("secret key %s: read: %s", path, strerror(errno));
		goto out;
	}
	if (keyfile_parse(buf, got, SECRET_PREFIX, seed) < 0) {
		log_error("secret key %s: malformed (expected \"%s<64 lower-case hex digits>\" and "
		          "a newline)",
		          path, SECRET_PREFIX);
		goto out;
	}
	crypto_sign_seed_keypair(id->pk, id->sk, seed);

	/* A .pub that names another key means the pair was mixed up: refuse rather than guess. */
	pubpath = xasprintf("%s.pub", path);
	prc = pubfile_read(pubpath, pub, 1);
	if (prc < 0)
		goto out;
	if (prc == 0 && sodium_memcmp(pub, id->pk, sizeof(pub)) != 0) {
		log_error("secret key %s: %s holds a different public key", path, pubpath);
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		sodium_memzero(id, sizeof(*id));
	sodium_memzero(buf, sizeof(buf));
	sodium_memzero(seed, sizeof(seed));
	free(pubpath);
	close(fd);
	return rc;
}

/*
 * Create path (refusing to replace anything) with mode, write len bytes and
 * fsync. 0 or -1 (logged). fchmod because the umask may have removed bits
 * we want (0644 for .pub) and must not be trusted to remove the ones we do
 * not.
 */
static int create_file(const char *path, mode_t mode, const void *data, size_t len)
{
	int fd;

	fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode);
	if (fd < 0) {
		log_error("key file %s: %s", path,
		          errno == EEXIST ? "already exists, not overwriting" : strerror(errno));
		return -1;
	}
	if (fchmod(fd, mode) < 0) {
		log_error("key file %s: fchmod: %s", path, strerror(errno));
		goto fail;
	}
	if (write_all(fd, data, len) < 0) {
		log_error("key file %s: write: %s", path, strerror(errno));
		goto fail;
	}
	if (fsync(fd) < 0) {
		log_error("key file %s: fsync: %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		log_error("key file %s: close: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
fail:
	close(fd);
	unlink(path);
	return -1;
}

/* Make the new directory entries durable too; failure here is only worth a warning. */
static void fsync_parent(const char *path)
{
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int fd;

	if (slash == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		log_warn("key file %s: cannot fsync directory %s: %s", path, dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(dir);
}

int vcrypto_identity_save(const struct vcrypto_identity *id, const char *path)
{
	char buf[KEYFILE_LEN + 1];
	char *pubpath = xasprintf("%s.pub", path);
	int rc = -1;

	/* libsodium's secret key is seed || pk: the file stores only the seed. */
	memcpy(buf, SECRET_PREFIX, KEYFILE_PREFIX_LEN);
	hex_encode(id->sk, crypto_sign_SEEDBYTES, buf + KEYFILE_PREFIX_LEN);
	buf[KEYFILE_LEN - 1] = '\n';
	if (create_file(path, 0600, buf, KEYFILE_LEN) < 0)
		goto out;

	memcpy(buf, PUBLIC_PREFIX, KEYFILE_PREFIX_LEN);
	hex_encode(id->pk, VCRYPTO_PK_LEN, buf + KEYFILE_PREFIX_LEN);
	buf[KEYFILE_LEN - 1] = '\n';
	if (create_file(pubpath, 0644, buf, KEYFILE_LEN) < 0) {
		/* Do not leave a secret without its public half behind. */
		unlink(path);
		goto out;
	}
	fsync_parent(path);
	rc = 0;
out:
	sodium_memzero(buf, sizeof(buf));
	free(pubpath);
	return rc;
}

void vcrypto_hash(uint8_t out[VCRYPTO_HASH_LEN], const void *data, size_t len)
{
	static const uint8_t empty;

	if (hash_portable)
		blake2b_hash(out, VCRYPTO_HASH_LEN, data, len);
	else
		crypto_generichash(out, VCRYPTO_HASH_LEN, len ? data : &empty, len, NULL, 0);
}

int vcrypto_hash_portable(void)
{
	return hash_portable;
}

/*
 * Time libsodium's BLAKE2b against the portable one on a chunk-sized buffer
 * (best of 3 each, about a millisecond in all) and keep the faster. Both give
 * the same digest, so the choice only changes speed.
 */
static void hash_calibrate(void)
{
	enum { LEN = 128 * 1024 };
	uint8_t *buf = calloc(1, LEN), a[VCRYPTO_HASH_LEN], b[VCRYPTO_HASH_LEN];
	uint64_t best_sodium = UINT64_MAX, best_portable = UINT64_MAX;

	if (buf == NULL)
		return;
	for (int i = 0; i < 3; i++) {
		uint64_t t0 = now_ns(), t1, t2;

		crypto_generichash(a, sizeof(a), buf, LEN, NULL, 0);
		t1 = now_ns();
		blake2b_hash(b, sizeof(b), buf, LEN);
		t2 = now_ns();
		if (t1 - t0 < best_sodium)
			best_sodium = t1 - t0;
		if (t2 - t1 < best_portable)
			best_portable = t2 - t1;
	}
	/* Paranoia: never pick an implementation that disagrees. */
	hash_portable = memcmp(a, b, sizeof(a)) == 0 && best_portable < best_sodium;
	free(buf);
}

void vcrypto_hash_init(struct vcrypto_hash_state *st)
{
	crypto_generichash_init((crypto_generichash_state *)st->opaque, NULL, 0, VCRYPTO_HASH_LEN);
}

void vcrypto_hash_update(struct vcrypto_hash_state *st, const void *data, size_t len)
{
	if (len == 0)
		return;
	crypto_generichash_update((crypto_generichash_state *)st->opaque, data, len);
}

void vcrypto_hash_final(struct vcrypto_hash_state *st, uint8_t out[VCRYPTO_HASH_LEN])
{
	crypto_generichash_final((crypto_generichash_state *)st->opaque, out, VCRYPTO_HASH_LEN);
}

/*
 * The signed bytes are domain || NUL || msg. The NUL ends the domain, so
 * no (domain, msg) pair can produce the same bytes as another. Caller frees
 * the result.
 */
static uint8_t *sign_input(const char *domain, const void *msg, size_t len, size_t *out_len)
{
	size_t dlen = strlen(domain);
	uint8_t *buf;

	if (len > SIZE_MAX - dlen - 1)
		fatal("vcrypto: signed message too large");
	buf = xmalloc(dlen + 1 + len);
	memcpy(buf, domain, dlen);
	buf[dlen] = 0;
	if (len)
		memcpy(buf + dlen + 1, msg, len);
	*out_len = dlen + 1 + len;
	return buf;
}

void vcrypto_sign(uint8_t sig[VCRYPTO_SIG_LEN], const char *domain, const void *msg, size_t len,
                  const uint8_t sk[VCRYPTO_SK_LEN])
{
	size_t n;
	uint8_t *buf = sign_input(domain, msg, len, &n);

	crypto_sign_detached(sig, NULL, buf, n, sk);
	free(buf);
}

int vcrypto_verify(const uint8_t sig[VCRYPTO_SIG_LEN], const char *domain, const void *msg,
                   size_t len, const uint8_t pk[VCRYPTO_PK_LEN])
{
	size_t n;
	uint8_t *buf = sign_input(domain, msg, len, &n);
	int rc = crypto_sign_verify_detached(sig, buf, n, pk);

	free(buf);
	return rc == 0 ? 0 : -1;
}

void vcrypto_random(void *buf, size_t len)
{
	randombytes_buf(buf, len);
}

int vcrypto_memcmp(const void *a, const void *b, size_t len)
{
	return sodium_memcmp(a, b, len) == 0 ? 0 : -1;
}

void vcrypto_wipe(void *p, size_t len)
{
	sodium_memzero(p, len);
}

void vcrypto_kx_generate(struct vcrypto_kx *kx)
{
	crypto_kx_keypair(kx->pk, kx->sk);
}

/*
 * One final session key: BLAKE2b-256 keyed with the join secret over
 * label || kx key || transcript. Keying with the join secret is what makes
 * a peer without it derive different keys.
 */
static void session_key(uint8_t out[VCRYPTO_KEY_LEN], const uint8_t kx_key[32],
                        const uint8_t transcript[VCRYPTO_HASH_LEN], const uint8_t join_secret[VCRYPTO_SECRET_LEN])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, join_secret, 32, VCRYPTO_KEY_LEN);
	crypto_generichash_update(&st, (const uint8_t *)SESSION_LABEL, sizeof(SESSION_LABEL) - 1);
	crypto_generichash_update(&st, kx_key, 32);
	crypto_generichash_update(&st, transcript, VCRYPTO_HASH_LEN);
	crypto_generichash_final(&st, out, VCRYPTO_KEY_LEN);
	sodium_memzero(&st, sizeof(st));
}

int vcrypto_session_keys(uint8_t rx[VCRYPTO_KEY_LEN], uint8_t tx[VCRYPTO_KEY_LEN],
                         const struct vcrypto_kx *mine, const uint8_t peer_pk[VCRYPTO_PK_LEN],
                         int initiator, const uint8_t transcript[VCRYPTO_HASH_LEN],
                         const uint8_t join_secret[VCRYPTO_SECRET_LEN])
{
	uint8_t krx[crypto_kx_SESSIONKEYBYTES], ktx[crypto_kx_SESSIONKEYBYTES];
	int rc;

	if (initiator)
		rc = crypto_kx_client_session_keys(krx, ktx, mine->pk, mine->sk, peer_pk);
	else
		rc = crypto_kx_server_session_keys(krx, ktx, mine->pk, mine->sk, peer_pk);
	if (rc != 0) {
		/* A low-order peer key would give an all-zero shared secret. */
		log_warn("vcrypto: key exchange failed (invalid peer key)");
		sodium_memzero(krx, sizeof(krx));
		sodium_memzero(ktx, sizeof(ktx));
		return -1;
	}
	session_key(rx, krx, transcript, join_secret);
	session_key(tx, ktx, transcript, join_secret);
	sodium_memzero(krx, sizeof(krx));
	sodium_memzero(ktx, sizeof(ktx));
	return 0;
}

void vcrypto_derive(uint8_t out[VCRYPTO_KEY_LEN], const uint8_t secret[VCRYPTO_SECRET_LEN],
                    const char *label)
{
	crypto_generichash(out, VCRYPTO_KEY_LEN, (const uint8_t *)label, strlen(label), secret,
	                   VCRYPTO_SECRET_LEN);
}

void vcrypto_mac(uint8_t mac[VCRYPTO_MAC_LEN], const uint8_t key[VCRYPTO_KEY_LEN], const void *data,
                 size_t len)
{
	static const uint8_t empty;

	crypto_generichash(mac, VCRYPTO_MAC_LEN, len ? data : &empty, len, key, VCRYPTO_KEY_LEN);
}

int vcrypto_mac_verify(const uint8_t mac[VCRYPTO_MAC_LEN], const uint8_t key[VCRYPTO_KEY_LEN],
                       const void *data, size_t len)
{
	uint8_t want[VCRYPTO_MAC_LEN];
	int rc;

	vcrypto_mac(want, key, data, len);
	rc = sodium_memcmp(want, mac, VCRYPTO_MAC_LEN) == 0 ? 0 : -1;
	sodium_memzero(want, sizeof(want));
	return rc;
}

/* Nonce: 4 zero bytes || u64 big-endian counter. */
static void aead_nonce(uint8_t nonce[12], uint64_t counter)
{
	memset(nonce, 0, 4);
	wire_put64(nonce + 4, counter);
}

void vcrypto_seal(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t ad_len,
                  uint64_t counter, const uint8_t key[VCRYPTO_KEY_LEN])
{
	uint8_t nonce[12];

	aead_nonce(nonce, counter);
	crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + len, NULL, in, len, ad,
	                                                   ad_len, NULL, nonce, key);
}

int vcrypto_open(uint8_t *out, const uint8_t *in, size_t ct_len, const uint8_t *ad, size_t ad_len,
                 uint64_t counter, const uint8_t key[VCRYPTO_KEY_LEN])
{
	uint8_t nonce[12];
	size_t len;

	if (ct_len < VCRYPTO_TAG_LEN)
		return -1;
	len = ct_len - VCRYPTO_TAG_LEN;
	aead_nonce(nonce, counter);
	if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, in, len, in + len, ad,
	                                                       ad_len, nonce, key) != 0)
		return -1;
	return 0;
}
