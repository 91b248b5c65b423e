/* SPDX-License-Identifier: ISC */
/*
 * vcrypto: the one module that calls libsodium. (The prefix is vcrypto_
 * because libsodium owns crypto_.)
 *
 * Hashing (BLAKE2b-256), signatures (Ed25519), identity key files, and the
 * session keys and AEAD framing of the peer protocol.
 */
#ifndef P2PVBD_VCRYPTO_H
#define P2PVBD_VCRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define VCRYPTO_HASH_LEN   32
#define VCRYPTO_PK_LEN     32
#define VCRYPTO_SK_LEN     64 /* libsodium's Ed25519 secret key: seed || pk */
#define VCRYPTO_SIG_LEN    64
#define VCRYPTO_KEY_LEN    32 /* symmetric session key */
#define VCRYPTO_TAG_LEN    16
#define VCRYPTO_SECRET_LEN 32 /* a volume's join secret (the URI's secret=) */
#define VCRYPTO_MAC_LEN    32 /* keyed BLAKE2b-256 */

/* Call once before anything else; 0 or -1. */
int vcrypto_init(void);

/* An Ed25519 identity. The secret half is wiped by vcrypto_identity_wipe(). */
struct vcrypto_identity {
	uint8_t pk[VCRYPTO_PK_LEN];
	uint8_t sk[VCRYPTO_SK_LEN];
};

void vcrypto_identity_generate(struct vcrypto_identity *id);
void vcrypto_identity_wipe(struct vcrypto_identity *id);

/*
 * Key files (format in proto/PROTOCOL.md, "Key files"):
 *   PATH      "p2pvbd-secret-key-v1 <64 hex digits of the Ed25519 seed>\n", mode 0600
 *   PATH.pub  "p2pvbd-public-key-v1 <64 hex digits of the public key>\n"
 * save refuses to overwrite an existing file. load refuses a secret file that
 * group or others can read, and one whose .pub (if present) does not match.
 * On error both log a message saying why and return -1.
 */
int vcrypto_identity_save(const struct vcrypto_identity *id, const char *path);
int vcrypto_identity_load(const char *path, struct vcrypto_identity *id);
int vcrypto_pubkey_load(const char *path, uint8_t pk[VCRYPTO_PK_LEN]);

/*
 * BLAKE2b-256 of data: libsodium's, or the portable one (blake2b.h) if
 * vcrypto_init found it faster on this CPU (P2PVBD_HASH=portable|sodium
 * forces the choice). vcrypto_hash_portable() says which is in use.
 */
int vcrypto_hash_portable(void);
/* BLAKE2b-256 of data. */
void vcrypto_hash(uint8_t out[VCRYPTO_HASH_LEN], const void *data, size_t len);

/* Incremental BLAKE2b-256; the state is opaque storage big enough for libsodium's. */
struct vcrypto_hash_state {
	_Alignas(64) uint8_t opaque[384];
};
void vcrypto_hash_init(struct vcrypto_hash_state *st);
void vcrypto_hash_update(struct vcrypto_hash_state *st, const void *data, size_t len);
void vcrypto_hash_final(struct vcrypto_hash_state *st, uint8_t out[VCRYPTO_HASH_LEN]);

/*
 * Ed25519 over (domain || NUL || msg). The domain string separates the kinds
 * of signed object so that one can never be replayed as another.
 */
void vcrypto_sign(uint8_t sig[VCRYPTO_SIG_LEN], const char *domain, const void *msg, size_t len,
                  const uint8_t sk[VCRYPTO_SK_LEN]);
int vcrypto_verify(const uint8_t sig[VCRYPTO_SIG_LEN], const char *domain, const void *msg,
                   size_t len, const uint8_t pk[VCRYPTO_PK_LEN]); /* 0 valid, -1 not */

/* Random bytes. */
void vcrypto_random(void *buf, size_t len);

/* Constant-time comparison; 0 if equal. */
int vcrypto_memcmp(const void *a, const void *b, size_t len);

/* Wipe a secret. */
void vcrypto_wipe(void *p, size_t len);

/*
 * Session set-up (see PROTOCOL.md, "Handshake"). Each side makes an
 * ephemeral X25519 key pair; after the hellos are exchanged, both derive a
 * transmit and a receive key from the X25519 shared secret, the transcript
 * hash and the volume's join secret. A peer that does not know the join
 * secret derives different keys, and its first frame fails to authenticate.
 */
struct vcrypto_kx {
	uint8_t pk[VCRYPTO_PK_LEN];
	uint8_t sk[32];
};
void vcrypto_kx_generate(struct vcrypto_kx *kx);
/* initiator != 0 for the side that opened the TCP connection. 0 or -1 (bad peer key). */
int vcrypto_session_keys(uint8_t rx[VCRYPTO_KEY_LEN], uint8_t tx[VCRYPTO_KEY_LEN],
                         const struct vcrypto_kx *mine, const uint8_t peer_pk[VCRYPTO_PK_LEN],
                         int initiator, const uint8_t transcript[VCRYPTO_HASH_LEN],
                         const uint8_t join_secret[VCRYPTO_SECRET_LEN]);

/*
 * A key for one purpose, derived from a volume's join secret: BLAKE2b-256
 * keyed with the secret over the ASCII label (no NUL). Each purpose has its
 * own label, none equal to the session label, so that one derived value
 * never serves as another (PROTOCOL.md §1). Whoever lacks the secret cannot
 * compute it.
 */
void vcrypto_derive(uint8_t out[VCRYPTO_KEY_LEN], const uint8_t secret[VCRYPTO_SECRET_LEN],
                    const char *label);

/*
 * MAC: BLAKE2b-256 keyed with key over data. vcrypto_mac_verify compares in
 * constant time: 0 if mac is right, -1 if not.
 */
void vcrypto_mac(uint8_t mac[VCRYPTO_MAC_LEN], const uint8_t key[VCRYPTO_KEY_LEN], const void *data,
                 size_t len);
int vcrypto_mac_verify(const uint8_t mac[VCRYPTO_MAC_LEN], const uint8_t key[VCRYPTO_KEY_LEN],
                       const void *data, size_t len);

/*
 * AEAD (ChaCha20-Poly1305 IETF) with a 64-bit message counter as the nonce.
 * ad is the frame header. Encryption writes len + VCRYPTO_TAG_LEN bytes to
 * out; out may equal in. Decryption writes ct_len - VCRYPTO_TAG_LEN bytes;
 * returns 0 or -1 (forged, corrupt or wrong key).
 */
void vcrypto_seal(uint8_t *out, const uint8_t *in, size_t len, const uint8_t *ad, size_t ad_len,
                  uint64_t counter, const uint8_t key[VCRYPTO_KEY_LEN]);
int vcrypto_open(uint8_t *out, const uint8_t *in, size_t ct_len, const uint8_t *ad, size_t ad_len,
                 uint64_t counter, const uint8_t key[VCRYPTO_KEY_LEN]);

#endif
