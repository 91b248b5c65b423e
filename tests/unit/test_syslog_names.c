/* SPDX-License-Identifier: ISC */
/*
 * util's log levels must not clash with <syslog.h> (which defines LOG_INFO,
 * LOG_DEBUG and friends as macros): this file includes both, so the build
 * breaks if they ever clash again.
 */
#include <criterion/criterion.h>

#include <syslog.h>

#include "util.h"

Test(util, log_levels_coexist_with_syslog)
{
	log_init("test", LOG_LEVEL_DEBUG);
	cr_assert_eq(log_level(), LOG_LEVEL_DEBUG);
	cr_assert_neq(LOG_LEVEL_INFO, LOG_LEVEL_DEBUG);
	cr_assert_eq(LOG_INFO, 6, "syslog's LOG_INFO is its own");
	log_init("test", LOG_LEVEL_INFO);
}
