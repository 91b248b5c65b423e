/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for vcrypto: known answers, signatures and their domains, key
 * files (round trip, permissions, malformed files), session keys and AEAD.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "util.h"
#include "vcrypto.h"
#include "tdir.h"

static char keydir[64];

static void vc_setup(void)
{
	cr_assert_eq(vcrypto_init(), 0);
	/* Failures are expected in these tests; keep their log lines out of the output. */
	log_init("test", -1);
	snprintf(keydir, sizeof(keydir), "%s", tdir_make("vcrypto"));
}

static void vc_teardown(void)
{
	tdir_remove();
}

TestSuite(vcrypto, .init = vc_setup, .fini = vc_teardown);

/* Caller frees the result. */
static char *kpath(const char *name)
{
	return xasprintf("%s/%s", keydir, name);
}

static void write_file(const char *path, mode_t mode, const char *data, size_t len)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, mode);

	cr_assert_geq(fd, 0, "open %s", path);
	cr_assert_eq(fchmod(fd, mode), 0);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0, "open %s", path);
	n = read(fd, buf, cap);
	close(fd);
	cr_assert_geq(n, 0);
	return (size_t)n;
}

Test(vcrypto, hash_known_answer)
{
	static const char want[] =
	    "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319";
	uint8_t h[VCRYPTO_HASH_LEN];
	char hex[2 * VCRYPTO_HASH_LEN + 1];

	vcrypto_hash(h, "abc", 3);
	hex_encode(h, sizeof(h), hex);
	cr_assert_str_eq(hex, want);
}

Test(vcrypto, hash_incremental_equals_oneshot)
{
	uint8_t data[1000], a[VCRYPTO_HASH_LEN], b[VCRYPTO_HASH_LEN];
	struct vcrypto_hash_state st;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	vcrypto_hash(a, data, sizeof(data));
	vcrypto_hash_init(&st);
	vcrypto_hash_update(&st, data, 1);
	vcrypto_hash_update(&st, data + 1, 0);
	vcrypto_hash_update(&st, data + 1, 500);
	vcrypto_hash_update(&st, data + 501, sizeof(data) - 501);
	vcrypto_hash_final(&st, b);
	cr_assert_arr_eq(a, b, sizeof(a));
	/* And the empty input hashes to something that is not all zeros. */
	vcrypto_hash(a, NULL, 0);
	memset(b, 0, sizeof(b));
	cr_assert_arr_neq(a, b, sizeof(a));
}

Test(vcrypto, sign_verify_domains_and_bits)
{
	struct vcrypto_identity id, other;
	uint8_t sig[VCRYPTO_SIG_LEN], msg[40];

	vcrypto_identity_generate(&id);
	vcrypto_identity_generate(&other);
	vcrypto_random(msg, sizeof(msg));
	vcrypto_sign(sig, "dom-a", msg, sizeof(msg), id.sk);
	cr_assert_eq(vcrypto_verify(sig, "dom-a", msg, sizeof(msg), id.pk), 0);
	cr_assert_eq(vcrypto_verify(sig, "dom-b", msg, sizeof(msg), id.pk), -1);
	cr_assert_eq(vcrypto_verify(sig, "dom-a", msg, sizeof(msg) - 1, id.pk), -1);
	cr_assert_eq(vcrypto_verify(sig, "dom-a", msg, sizeof(msg), other.pk), -1);
	cr_assert_eq(vcrypto_verify(sig, "dom-", msg, sizeof(msg), id.pk), -1);
	for (size_t i = 0; i < sizeof(msg) * 8; i++) {
		msg[i / 8] ^= (uint8_t)(1u << (i % 8));
		cr_assert_eq(vcrypto_verify(sig, "dom-a", msg, sizeof(msg), id.pk), -1,
		             "message bit %zu", i);
		msg[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	for (size_t i = 0; i < sizeof(sig) * 8; i++) {
		sig[i / 8] ^= (uint8_t)(1u << (i % 8));
		cr_assert_eq(vcrypto_verify(sig, "dom-a", msg, sizeof(msg), id.pk), -1,
		             "signature bit %zu", i);
		sig[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	cr_assert_eq(vcrypto_verify(sig, "dom-a", msg, sizeof(msg), id.pk), 0);
	vcrypto_identity_wipe(&id);
	for (size_t i = 0; i < sizeof(id.sk); i++)
		cr_assert_eq(id.sk[i], 0);
}

Test(vcrypto, sign_is_ed25519_over_domain_nul_msg)
{
	/* The agreed format, checked with libsodium directly: Ed25519 over "ab" 0x00 "c". */
	struct vcrypto_identity id;
	uint8_t sig[VCRYPTO_SIG_LEN];

	vcrypto_identity_generate(&id);
	vcrypto_sign(sig, "ab", "c", 1, id.sk);
	cr_assert_eq(crypto_sign_verify_detached(sig, (const uint8_t *)"ab\0c", 4, id.pk), 0);
	cr_assert_eq(vcrypto_verify(sig, "ab", "c", 1, id.pk), 0);
	/* Without the NUL, domain "a" with message "bc" would sign the same bytes. */
	cr_assert_eq(vcrypto_verify(sig, "a", "bc", 2, id.pk), -1);
	cr_assert_eq(vcrypto_verify(sig, "abc", "", 0, id.pk), -1);
}

Test(vcrypto, key_save_load_round_trip)
{
	struct vcrypto_identity id, back;
	uint8_t pk[VCRYPTO_PK_LEN];
	char *path = kpath("id"), *pub = kpath("id.pub");
	char buf[200];
	struct stat st;
	size_t n;

	vcrypto_identity_generate(&id);
	cr_assert_eq(vcrypto_identity_save(&id, path), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(stat(pub, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0644);

	n = read_file(path, buf, sizeof(buf));
	cr_assert_eq(n, 21 + 64 + 1);
	cr_assert(memcmp(buf, "p2pvbd-secret-key-v1 ", 21) == 0);
	cr_assert_eq(buf[n - 1], '\n');
	n = read_file(pub, buf, sizeof(buf));
	cr_assert_eq(n, 21 + 64 + 1);
	{
		char hex[65];

		hex_encode(id.pk, 32, hex);
		cr_assert(memcmp(buf, "p2pvbd-public-key-v1 ", 21) == 0);
		cr_assert(memcmp(buf + 21, hex, 64) == 0);
	}

	memset(&back, 0xaa, sizeof(back));
	cr_assert_eq(vcrypto_identity_load(path, &back), 0);
	cr_assert_arr_eq(back.pk, id.pk, sizeof(id.pk));
	cr_assert_arr_eq(back.sk, id.sk, sizeof(id.sk));
	cr_assert_eq(vcrypto_pubkey_load(pub, pk), 0);
	cr_assert_arr_eq(pk, id.pk, sizeof(pk));

	/* Without a .pub the secret file alone is enough. */
	cr_assert_eq(unlink(pub), 0);
	cr_assert_eq(vcrypto_identity_load(path, &back), 0);
	cr_assert_arr_eq(back.pk, id.pk, sizeof(id.pk));
	cr_assert_eq(vcrypto_pubkey_load(pub, pk), -1);
	free(path);
	free(pub);
}

Test(vcrypto, save_refuses_to_overwrite)
{
	struct vcrypto_identity a, b, back;
	char *path = kpath("k"), *pub = kpath("k.pub"), *path2 = kpath("k2"),
	     *pub2 = kpath("k2.pub");

	vcrypto_identity_generate(&a);
	vcrypto_identity_generate(&b);
	cr_assert_eq(vcrypto_identity_save(&a, path), 0);
	cr_assert_eq(vcrypto_identity_save(&b, path), -1);
	cr_assert_eq(vcrypto_identity_load(path, &back), 0);
	cr_assert_arr_eq(back.pk, a.pk, sizeof(a.pk));

	/* An existing .pub also blocks the save, and no secret file is left behind. */
	write_file(pub2, 0644, "x", 1);
	cr_assert_eq(vcrypto_identity_save(&b, path2), -1);
	cr_assert_eq(access(path2, F_OK), -1);
	free(path);
	free(pub);
	free(path2);
	free(pub2);
}

Test(vcrypto, load_refuses_group_readable)
{
	struct vcrypto_identity id, back;
	char *path = kpath("k");

	vcrypto_identity_generate(&id);
	cr_assert_eq(vcrypto_identity_save(&id, path), 0);
	cr_assert_eq(chmod(path, 0644), 0);
	cr_assert_eq(vcrypto_identity_load(path, &back), -1);
	cr_assert_eq(chmod(path, 0640), 0);
	cr_assert_eq(vcrypto_identity_load(path, &back), -1);
	cr_assert_eq(chmod(path, 0604), 0);
	cr_assert_eq(vcrypto_identity_load(path, &back), -1);
	cr_assert_eq(chmod(path, 0400), 0);
	cr_assert_eq(vcrypto_identity_load(path, &back), 0);
	free(path);
}

Test(vcrypto, load_refuses_mismatching_pub)
{
	struct vcrypto_identity a, b, back;
	char *pa = kpath("a"), *pb = kpath("b"), *pubb = kpath("b.pub"), *puba = kpath("a.pub");

	vcrypto_identity_generate(&a);
	vcrypto_identity_generate(&b);
	cr_assert_eq(vcrypto_identity_save(&a, pa), 0);
	cr_assert_eq(vcrypto_identity_save(&b, pb), 0);
	cr_assert_eq(rename(pubb, puba), 0);
	cr_assert_eq(vcrypto_identity_load(pa, &back), -1);
	/* A malformed .pub is refused too, rather than ignored. */
	write_file(puba, 0644, "garbage\n", 8);
	cr_assert_eq(vcrypto_identity_load(pa, &back), -1);
	free(pa);
	free(pb);
	free(pubb);
	free(puba);
}

Test(vcrypto, load_refuses_malformed)
{
	static const char hex[] = "000102030405060708090a0b0c0d0e0f"
	                          "101112131415161718191a1b1c1d1e1f";
	struct {
		const char *what;
		char *text;
	} cases[] = {
	    {"good", xasprintf("p2pvbd-secret-key-v1 %s\n", hex)},
	    {"no newline", xasprintf("p2pvbd-secret-key-v1 %s", hex)},
	    {"two newlines", xasprintf("p2pvbd-secret-key-v1 %s\n\n", hex)},
	    {"CRLF", xasprintf("p2pvbd-secret-key-v1 %s\r\n", hex)},
	    {"wrong prefix", xasprintf("p2pvbd-secret-key-v2 %s\n", hex)},
	    {"public prefix", xasprintf("p2pvbd-public-key-v1 %s\n", hex)},
	    {"two spaces", xasprintf("p2pvbd-secret-key-v1  %.63s\n", hex)},
	    {"short hex", xasprintf("p2pvbd-secret-key-v1 %.62s\n", hex)},
	    {"long hex", xasprintf("p2pvbd-secret-key-v1 %s00\n", hex)},
	    {"non-hex", xasprintf("p2pvbd-secret-key-v1 %.63sg\n", hex)},
	    {"upper-case hex", xasprintf("p2pvbd-secret-key-v1 %.63sF\n", hex)},
	    {"empty", xstrdup("")},
	};
	struct vcrypto_identity back;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *name = xasprintf("m%zu", i), *path = kpath(name);

		write_file(path, 0600, cases[i].text, strlen(cases[i].text));
		cr_assert_eq(vcrypto_identity_load(path, &back), i == 0 ? 0 : -1, "case %s",
		             cases[i].what);
		free(cases[i].text);
		free(name);
		free(path);
	}
	{
		char *missing = kpath("does-not-exist");

		cr_assert_eq(vcrypto_identity_load(missing, &back), -1);
		free(missing);
	}
}

Test(vcrypto, load_seed_known_answer)
{
	/* The key is derived from the seed in the file, so the same file gives the same key. */
	static const char text[] =
	    "p2pvbd-secret-key-v1 "
	    "0000000000000000000000000000000000000000000000000000000000000000\n";
	struct vcrypto_identity a, b;
	char *pa = kpath("s1"), *pb = kpath("s2");

	write_file(pa, 0600, text, strlen(text));
	write_file(pb, 0600, text, strlen(text));
	cr_assert_eq(vcrypto_identity_load(pa, &a), 0);
	cr_assert_eq(vcrypto_identity_load(pb, &b), 0);
	cr_assert_arr_eq(a.sk, b.sk, sizeof(a.sk));
	/* libsodium's secret key is seed || pk. */
	for (int i = 0; i < 32; i++)
		cr_assert_eq(a.sk[i], 0);
	cr_assert_arr_eq(a.sk + 32, a.pk, 32);
	free(pa);
	free(pb);
}

struct pair {
	uint8_t i_rx[32], i_tx[32], a_rx[32], a_tx[32];
};

/* Both sides of one handshake with the given join secrets. */
static void handshake(struct pair *p, const uint8_t si[32], const uint8_t sa[32],
                      const uint8_t transcript_i[32], const uint8_t transcript_a[32])
{
	struct vcrypto_kx ki, ka;

	vcrypto_kx_generate(&ki);
	vcrypto_kx_generate(&ka);
	cr_assert_eq(vcrypto_session_keys(p->i_rx, p->i_tx, &ki, ka.pk, 1, transcript_i, si), 0);
	cr_assert_eq(vcrypto_session_keys(p->a_rx, p->a_tx, &ka, ki.pk, 0, transcript_a, sa), 0);
}

Test(vcrypto, session_keys_agree)
{
	uint8_t secret[32], t[32];
	struct pair p;

	vcrypto_random(secret, sizeof(secret));
	vcrypto_random(t, sizeof(t));
	handshake(&p, secret, secret, t, t);
	cr_assert_arr_eq(p.i_tx, p.a_rx, 32);
	cr_assert_arr_eq(p.i_rx, p.a_tx, 32);
	cr_assert_arr_neq(p.i_tx, p.i_rx, 32);
}

Test(vcrypto, session_keys_wrong_secret_or_transcript)
{
	uint8_t s1[32], s2[32], t1[32], t2[32];
	struct pair p;

	vcrypto_random(s1, sizeof(s1));
	memcpy(s2, s1, sizeof(s2));
	s2[31] ^= 1;
	vcrypto_random(t1, sizeof(t1));
	memcpy(t2, t1, sizeof(t2));
	t2[0] ^= 0x80;

	handshake(&p, s1, s2, t1, t1);
	cr_assert_arr_neq(p.i_tx, p.a_rx, 32);
	cr_assert_arr_neq(p.i_rx, p.a_tx, 32);

	handshake(&p, s1, s1, t1, t2);
	cr_assert_arr_neq(p.i_tx, p.a_rx, 32);
	cr_assert_arr_neq(p.i_rx, p.a_tx, 32);
}

Test(vcrypto, session_keys_reject_low_order_point)
{
	/* The all-zero X25519 point gives an all-zero shared secret: refused. */
	uint8_t zero[32] = {0}, rx[32], tx[32], t[32] = {0}, s[32] = {0};
	struct vcrypto_kx k;

	vcrypto_kx_generate(&k);
	cr_assert_eq(vcrypto_session_keys(rx, tx, &k, zero, 1, t, s), -1);
	cr_assert_eq(vcrypto_session_keys(rx, tx, &k, zero, 0, t, s), -1);
}

Test(vcrypto, aead_round_trip_and_tamper)
{
	uint8_t key[32], key2[32], ad[4] = {1, 2, 3, 4};
	uint8_t pt[100], ct[100 + VCRYPTO_TAG_LEN], out[100 + VCRYPTO_TAG_LEN];

	vcrypto_random(key, sizeof(key));
	memcpy(key2, key, sizeof(key2));
	key2[5] ^= 1;
	vcrypto_random(pt, sizeof(pt));
	vcrypto_seal(ct, pt, sizeof(pt), ad, sizeof(ad), 7, key);
	cr_assert_arr_neq(ct, pt, sizeof(pt));
	cr_assert_eq(vcrypto_open(out, ct, sizeof(ct), ad, sizeof(ad), 7, key), 0);
	cr_assert_arr_eq(out, pt, sizeof(pt));

	cr_assert_eq(vcrypto_open(out, ct, sizeof(ct), ad, sizeof(ad), 8, key), -1);
	cr_assert_eq(vcrypto_open(out, ct, sizeof(ct), ad, sizeof(ad), 7, key2), -1);
	cr_assert_eq(vcrypto_open(out, ct, sizeof(ct), ad, 3, 7, key), -1);
	ad[0] ^= 1;
	cr_assert_eq(vcrypto_open(out, ct, sizeof(ct), ad, sizeof(ad), 7, key), -1);
	ad[0] ^= 1;
	for (size_t i = 0; i < sizeof(ct); i++) {
		ct[i] ^= 0x40;
		cr_assert_eq(vcrypto_open(out, ct, sizeof(ct), ad, sizeof(ad), 7, key), -1,
		             "byte %zu", i);
		ct[i] ^= 0x40;
	}
	cr_assert_eq(vcrypto_open(out, ct, sizeof(ct) - 1, ad, sizeof(ad), 7, key), -1);
	cr_assert_eq(vcrypto_open(out, ct, VCRYPTO_TAG_LEN - 1, ad, sizeof(ad), 7, key), -1);
}

Test(vcrypto, aead_in_place_and_empty)
{
	uint8_t key[32], buf[64 + VCRYPTO_TAG_LEN], orig[64], tag[VCRYPTO_TAG_LEN];

	vcrypto_random(key, sizeof(key));
	vcrypto_random(orig, sizeof(orig));
	memcpy(buf, orig, sizeof(orig));
	vcrypto_seal(buf, buf, sizeof(orig), NULL, 0, UINT64_MAX, key);
	cr_assert_eq(vcrypto_open(buf, buf, sizeof(buf), NULL, 0, UINT64_MAX, key), 0);
	cr_assert_arr_eq(buf, orig, sizeof(orig));

	/* An empty message is just a tag, and still authenticated. */
	vcrypto_seal(tag, NULL, 0, orig, 8, 1, key);
	cr_assert_eq(vcrypto_open(buf, tag, sizeof(tag), orig, 8, 1, key), 0);
	cr_assert_eq(vcrypto_open(buf, tag, sizeof(tag), orig, 7, 1, key), -1);
}

Test(vcrypto, aead_nonce_layout)
{
	/*
	 * Counter 1 and counter 1 << 32 must be different nonces: the
	 * counter fills all 8 low bytes, not just 4.
	 */
	uint8_t key[32] = {0}, a[VCRYPTO_TAG_LEN + 8], b[VCRYPTO_TAG_LEN + 8], pt[8] = {0};

	vcrypto_seal(a, pt, sizeof(pt), NULL, 0, 1, key);
	vcrypto_seal(b, pt, sizeof(pt), NULL, 0, (uint64_t)1 << 32, key);
	cr_assert_arr_neq(a, b, sizeof(a));
}

Test(vcrypto, memcmp_and_wipe)
{
	uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8];

	memcpy(b, a, sizeof(a));
	cr_assert_eq(vcrypto_memcmp(a, b, sizeof(a)), 0);
	b[7] = 0;
	cr_assert_neq(vcrypto_memcmp(a, b, sizeof(a)), 0);
	vcrypto_wipe(a, sizeof(a));
	for (size_t i = 0; i < sizeof(a); i++)
		cr_assert_eq(a[i], 0);
}

Test(vcrypto, session_keys_match_agreed_derivation)
{
	/* Recompute the PROTOCOL.md derivation with libsodium and compare. */
	struct vcrypto_kx ki, ka;
	uint8_t secret[32], t[32], rx[32], tx[32], krx[32], ktx[32], want[32];
	uint8_t in[17 + 32 + 32];

	vcrypto_random(secret, sizeof(secret));
	vcrypto_random(t, sizeof(t));
	vcrypto_kx_generate(&ki);
	vcrypto_kx_generate(&ka);
	cr_assert_eq(vcrypto_session_keys(rx, tx, &ki, ka.pk, 1, t, secret), 0);
	cr_assert_eq(crypto_kx_client_session_keys(krx, ktx, ki.pk, ki.sk, ka.pk), 0);
	memcpy(in, "p2pvbd-v1-session", 17);
	memcpy(in + 17, ktx, 32);
	memcpy(in + 49, t, 32);
	crypto_generichash(want, 32, in, sizeof(in), secret, 32);
	cr_assert_arr_eq(tx, want, 32);
	memcpy(in + 17, krx, 32);
	crypto_generichash(want, 32, in, sizeof(in), secret, 32);
	cr_assert_arr_eq(rx, want, 32);
}

Test(vcrypto, aead_matches_agreed_nonce)
{
	/* nonce = 4 zero bytes || u64 big-endian counter; out = ct || tag. */
	uint8_t key[32], pt[20], got[20 + 16], want[20 + 16], nonce[12] = {0};
	unsigned long long wlen;

	vcrypto_random(key, sizeof(key));
	vcrypto_random(pt, sizeof(pt));
	vcrypto_seal(got, pt, sizeof(pt), (const uint8_t *)"hd", 2, 0x0102030405060708ull, key);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(i + 1);
	crypto_aead_chacha20poly1305_ietf_encrypt(want, &wlen, pt, sizeof(pt),
	                                          (const uint8_t *)"hd", 2, NULL, nonce, key);
	cr_assert_eq(wlen, sizeof(want));
	cr_assert_arr_eq(got, want, sizeof(want));
}

Test(vcrypto, derive_and_mac_match_agreed_blake2b)
{
	/* derive = BLAKE2b-256 keyed with the secret over the label; mac = keyed BLAKE2b-256. */
	uint8_t secret[32], other[32], k[32], k2[32], want[32], mac[32];
	static const uint8_t data[] = "some bytes";

	vcrypto_random(secret, sizeof(secret));
	memcpy(other, secret, sizeof(other));
	other[0] ^= 1;
	vcrypto_derive(k, secret, "label-a");
	crypto_generichash(want, 32, (const uint8_t *)"label-a", 7, secret, 32);
	cr_assert_arr_eq(k, want, 32);
	vcrypto_derive(k2, secret, "label-b");
	cr_assert(memcmp(k, k2, 32) != 0, "another label gives another key");
	vcrypto_derive(k2, other, "label-a");
	cr_assert(memcmp(k, k2, 32) != 0, "another secret gives another key");

	vcrypto_mac(mac, k, data, sizeof(data));
	crypto_generichash(want, 32, data, sizeof(data), k, 32);
	cr_assert_arr_eq(mac, want, 32);
	cr_assert_eq(vcrypto_mac_verify(mac, k, data, sizeof(data)), 0);
	cr_assert_eq(vcrypto_mac_verify(mac, k, data, sizeof(data) - 1), -1);
	cr_assert_eq(vcrypto_mac_verify(mac, k2, data, sizeof(data)), -1);
	for (size_t i = 0; i < 8 * sizeof(mac); i++) {
		mac[i / 8] ^= (uint8_t)(1u << (i % 8));
		cr_assert_eq(vcrypto_mac_verify(mac, k, data, sizeof(data)), -1, "MAC bit %zu", i);
		mac[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	vcrypto_mac(mac, k, NULL, 0);
	cr_assert_eq(vcrypto_mac_verify(mac, k, NULL, 0), 0);
}
