/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of migrate_parse, the arguments of the control socket's
 * `migrate` command: the URI and options are taken, and anything QEMU
 * should not be handed (an unknown transport, exec:, blanks, quotes,
 * control bytes, an overlong URI, two URIs, bad timeouts) is refused.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "migrate.h"

static int parse(const char *args, struct migrate_req *req)
{
	char err[256];

	err[0] = '\0';
	int rc = migrate_parse(args, req, err, sizeof(err));

	if (rc != 0)
		cr_assert(err[0] != '\0', "no reason given for '%s'", args);
	return rc;
}

Test(migrate, uri_and_options)
{
	struct migrate_req r;

	cr_assert_eq(parse("tcp:127.0.0.1:4444", &r), 0);
	cr_assert_str_eq(r.uri, "tcp:127.0.0.1:4444");
	cr_assert_eq(r.postcopy, 0);
	cr_assert_eq(r.timeout_s, MIGRATE_TIMEOUT_DEFAULT_S);

	cr_assert_eq(parse("--timeout 90 --postcopy unix:/run/mig.sock", &r), 0);
	cr_assert_str_eq(r.uri, "unix:/run/mig.sock");
	cr_assert_eq(r.postcopy, 1);
	cr_assert_eq(r.timeout_s, 90);

	cr_assert_eq(parse("vsock:3:4444 --postcopy", &r), 0);
	cr_assert_str_eq(r.uri, "vsock:3:4444");
	cr_assert_eq(parse("  rdma:10.0.0.2:4444  ", &r), 0);
	cr_assert_str_eq(r.uri, "rdma:10.0.0.2:4444");
}

Test(migrate, refused)
{
	static const char *const bad[] = {
	    "",
	    "--postcopy",
	    "exec:cat > /tmp/x",
	    "exec:true",
	    "file:/tmp/x",
	    "tcp:",
	    "TCP:1.2.3.4:5",
	    "tcp:1.2.3.4:5 tcp:1.2.3.4:6",
	    "tcp:\"x\":1",
	    "tcp:a\\b:1",
	    "tcp:a\tb:1",
	    "tcp:a\x01:1",
	    "tcp:\xc3\xa9:1",
	    "--timeout",
	    "--timeout 0 tcp:a:1",
	    "--timeout -5 tcp:a:1",
	    "--timeout +5 tcp:a:1",
	    "--timeout 5x tcp:a:1",
	    "--timeout 86401 tcp:a:1",
	    "--timeout 99999999999999999999999 tcp:a:1",
	    "--bogus tcp:a:1",
	    "-p tcp:a:1",
	};
	struct migrate_req r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_neq(parse(bad[i], &r), 0, "accepted '%s'", bad[i]);
}

Test(migrate, long_uri)
{
	struct migrate_req r;
	char args[MIGRATE_URI_MAX + 80];

	memset(args, 'a', sizeof(args));
	memcpy(args, "unix:", 5);
	args[MIGRATE_URI_MAX] = '\0'; /* exactly the longest */
	cr_assert_eq(parse(args, &r), 0);
	cr_assert_eq(strlen(r.uri), MIGRATE_URI_MAX);
	args[MIGRATE_URI_MAX] = 'a';
	args[MIGRATE_URI_MAX + 1] = '\0';
	cr_assert_neq(parse(args, &r), 0);
	args[sizeof(args) - 1] = '\0'; /* beyond the line buffer */
	cr_assert_neq(parse(args, &r), 0);
}
