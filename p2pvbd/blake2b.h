/* SPDX-License-Identifier: ISC */
/*
 * blake2b: a portable, scalar BLAKE2b (RFC 7693), unkeyed, one shot.
 *
 * Why a second implementation next to libsodium's: libsodium picks a SIMD
 * (AVX2) compression function where the CPU has one, and on some CPUs (seen
 * on AMD EPYC virtual machines) that runs at about half the speed of plain
 * 64-bit code. vcrypto_init() times both once and vcrypto_hash() uses the
 * faster; both give identical digests (a unit test checks every length up to
 * a few blocks against libsodium).
 */
#ifndef P2PVBD_BLAKE2B_H
#define P2PVBD_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

/* BLAKE2b with an outlen-byte digest (1..64) of len bytes at data. */
void blake2b_hash(uint8_t *out, size_t outlen, const void *data, size_t len);

#endif
