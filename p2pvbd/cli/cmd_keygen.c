/* SPDX-License-Identifier: ISC */
/*
 * cmd_keygen: `p2pvbd keygen -o PATH`, an Ed25519 identity for a source
 * (and for any peer that signs receipts).
 */
#include <getopt.h>
#include <stdio.h>

#include "internal.h"
#include "util.h"
#include "vcrypto.h"

static const char usage_keygen[] =
    "usage: p2pvbd keygen -o PATH\n"
    "\n"
    "Make an Ed25519 key pair: PATH holds the secret key (mode 0600), PATH.pub the\n"
    "public key. Refuses to overwrite an existing file.\n"
    "\n"
    "  -o, --output PATH   where to write the secret key (required)\n"
    "  -h, --help          this text\n";

static int cmd_keygen(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *out = NULL;
	struct vcrypto_identity id;
	int c, rc;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'h':
			fputs(usage_keygen, stdout);
			return 0;
		default:
			return cli_usage_error("p2pvbd keygen", "%s", cli_bad_option(argv));
		}
	}
	if (out == NULL || optind != argc)
		return cli_usage_error("p2pvbd keygen", "keygen needs -o PATH and nothing else");
	vcrypto_identity_generate(&id);
	rc = vcrypto_identity_save(&id, out);
	if (rc == 0) {
		char hex[2 * VCRYPTO_PK_LEN + 1];

		hex_encode(id.pk, VCRYPTO_PK_LEN, hex);
		printf("wrote %s and %s.pub\npublic key %s\n", out, out, hex);
	}
	vcrypto_identity_wipe(&id);
	return rc == 0 ? 0 : 1;
}

const struct cmd_entry cmd_keygen_entry = {
    .name = "keygen",
    .args = "-o PATH",
    .summary = "make an Ed25519 identity (PATH and PATH.pub)",
    .usage = usage_keygen,
    .exec = cmd_keygen,
};
