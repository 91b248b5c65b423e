/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of addrtab: per-address counting, IPv6 /64 grouping, entries
 * that go at zero, and many addresses in a small table.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "addrtab.h"

static struct addrtab_key v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	const uint8_t ip[4] = {a, b, c, d};
	struct addrtab_key k;

	addrtab_key(4, ip, &k);
	return k;
}

Test(addrtab, counts_per_address)
{
	struct addrtab *t = addrtab_new(4, 12345);
	struct addrtab_key a = v4(127, 0, 0, 1), b = v4(127, 0, 0, 2);

	cr_assert_eq(addrtab_count(t, &a), 0);
	cr_assert_eq(addrtab_add(t, &a), 1);
	cr_assert_eq(addrtab_add(t, &a), 2);
	cr_assert_eq(addrtab_add(t, &b), 1);
	cr_assert_eq(addrtab_count(t, &a), 2);
	cr_assert_eq(addrtab_size(t), 2);
	addrtab_sub(t, &a);
	addrtab_sub(t, &a);
	cr_assert_eq(addrtab_count(t, &a), 0);
	cr_assert_eq(addrtab_size(t), 1, "an address at zero is removed");
	addrtab_sub(t, &b);
	cr_assert_eq(addrtab_size(t), 0);
	addrtab_free(t);
}

Test(addrtab, ipv6_counts_by_slash_64)
{
	uint8_t x[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1};
	uint8_t y[16], z[16];
	struct addrtab_key kx, ky, kz, k4;
	char s[64];
	struct addrtab *t = addrtab_new(0, 1);

	memcpy(y, x, 16);
	y[15] = 0x99; /* same /64 */
	y[9] = 0x42;
	memcpy(z, x, 16);
	z[7] = 3; /* another /64 */
	addrtab_key(6, x, &kx);
	addrtab_key(6, y, &ky);
	addrtab_key(6, z, &kz);
	cr_assert_arr_eq(kx.b, ky.b, ADDRTAB_KEY_LEN);
	cr_assert_arr_neq(kx.b, kz.b, ADDRTAB_KEY_LEN);
	/* An IPv4 address never equals an IPv6 prefix with the same bytes. */
	addrtab_key(4, x, &k4);
	cr_assert_arr_neq(k4.b, kx.b, ADDRTAB_KEY_LEN);
	addrtab_add(t, &kx);
	cr_assert_eq(addrtab_add(t, &ky), 2);
	cr_assert_eq(addrtab_add(t, &kz), 1);
	addrtab_key_format(&kx, s, sizeof(s));
	cr_assert_str_eq(s, "2001:db8:1:2::/64");
	k4 = v4(192, 0, 2, 1);
	addrtab_key_format(&k4, s, sizeof(s));
	cr_assert_str_eq(s, "192.0.2.1");
	addrtab_free(t);
}

Test(addrtab, many_addresses_in_a_small_table)
{
	struct addrtab *t = addrtab_new(16, 99);

	for (unsigned i = 0; i < 5000; i++) {
		struct addrtab_key k = v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);

		cr_assert_eq(addrtab_add(t, &k), 1);
		if (i % 2 == 0)
			cr_assert_eq(addrtab_add(t, &k), 2);
	}
	cr_assert_eq(addrtab_size(t), 5000);
	for (unsigned i = 0; i < 5000; i++) {
		struct addrtab_key k = v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);

		cr_assert_eq(addrtab_count(t, &k), i % 2 == 0 ? 2u : 1u);
		addrtab_sub(t, &k);
	}
	cr_assert_eq(addrtab_size(t), 2500);
	addrtab_free(t);
}
