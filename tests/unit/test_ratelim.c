/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of ratelim_check: bursts per window, the count of what was
 * dropped, and the "last one in this window" flag.
 */
#include <criterion/criterion.h>

#include "ratelim.h"

Test(ratelim, burst_then_drop_then_report)
{
	struct ratelim rl = {0};
	uint64_t dropped = 99;
	int last = -1, passed = 0;

	for (int i = 0; i < 10; i++) {
		if (ratelim_check(&rl, 1000, 3, 500, &dropped, &last)) {
			passed++;
			cr_assert_eq(dropped, 0);
			cr_assert_eq(last, passed == 3);
		}
	}
	cr_assert_eq(passed, 3);
	/* Still inside the window: dropped. */
	cr_assert_eq(ratelim_check(&rl, 1499, 3, 500, &dropped, &last), 0);
	/* A new window: the first one through reports the 8 dropped. */
	cr_assert_eq(ratelim_check(&rl, 1500, 3, 500, &dropped, &last), 1);
	cr_assert_eq(dropped, 8);
	cr_assert_eq(last, 0);
	cr_assert_eq(ratelim_check(&rl, 1501, 3, 500, &dropped, &last), 1);
	cr_assert_eq(dropped, 0);
}

Test(ratelim, quiet_messages_always_pass)
{
	struct ratelim rl = {0};
	uint64_t dropped;
	int last;

	/* One message per window is never dropped, and never flagged. */
	for (uint64_t t = 0; t < 100; t++) {
		cr_assert_eq(ratelim_check(&rl, t * 1000, 2, 1000, &dropped, &last), 1);
		cr_assert_eq(dropped, 0);
		cr_assert_eq(last, 0);
	}
}

Test(ratelim, flood_is_bounded)
{
	struct ratelim rl = {0};
	uint64_t dropped, total_dropped = 0;
	int last;
	unsigned passed = 0;

	/* A million messages over 10 s of clock, windows of 1 s, 5 each: 50 lines. */
	for (uint64_t i = 0; i < 1000000; i++) {
		if (ratelim_check(&rl, i / 100000 * 1000, 5, 1000, &dropped, &last)) {
			passed++;
			total_dropped += dropped;
		}
	}
	cr_assert_eq(passed, 50);
	cr_assert_eq(total_dropped + rl.dropped + passed, 1000000);
}

Test(ratelim, clock_going_back_starts_a_window)
{
	struct ratelim rl = {0};
	uint64_t dropped;
	int last;

	cr_assert_eq(ratelim_check(&rl, 5000, 1, 1000, &dropped, &last), 1);
	cr_assert_eq(ratelim_check(&rl, 5001, 1, 1000, &dropped, &last), 0);
	cr_assert_eq(ratelim_check(&rl, 10, 1, 1000, &dropped, &last), 1);
	cr_assert_eq(dropped, 1);
}
