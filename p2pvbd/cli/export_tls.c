/* SPDX-License-Identifier: ISC */
/*
 * export_tls: the NBD export's TLS options (--tls, --tls-psk, --tls-creds,
 * --tls-verify-peer), which seed and fetch share: their values, and the
 * rules that tie them to -e. A TCP export serves the VM's disk to whoever
 * reaches the port, so it needs TLS or an explicit --tls=off.
 */
#include <string.h>

#include "internal.h"

int export_tls_option(struct nbd_tls_opts *t, int c, const char *arg, const char *who)
{
	switch (c) {
	case EXPORT_O_TLS:
		if (strcmp(arg, "off") == 0)
			t->mode = NBD_TLS_OFF;
		else if (strcmp(arg, "require") == 0)
			t->mode = NBD_TLS_REQUIRE;
		else if (strcmp(arg, "on") == 0)
			return cli_usage_error(who, "--tls=on (TLS offered but optional) is not "
			                            "supported: a client could skip it; use "
			                            "--tls=require");
		else
			return cli_usage_error(who, "bad --tls %s (off or require)", arg);
		break;
	case EXPORT_O_TLS_PSK:
		t->psk_file = arg;
		break;
	case EXPORT_O_TLS_CREDS:
		t->creds_dir = arg;
		break;
	case EXPORT_O_TLS_VERIFY_PEER:
		t->verify_peer = 1;
		break;
	}
	return CMD_PROCEED;
}

int export_tls_check(struct nbd_tls_opts *t, const char *export_spec, const char *who)
{
	int creds = t->psk_file != NULL || t->creds_dir != NULL;

	if (export_spec == NULL) {
		if (creds || t->mode != NBD_TLS_UNSET || t->verify_peer)
			return cli_usage_error(who, "--tls, --tls-psk and --tls-creds need -e");
		return CMD_PROCEED;
	}
	if (t->psk_file != NULL && t->creds_dir != NULL)
		return cli_usage_error(who, "--tls-psk and --tls-creds: give one of them");
	if (t->verify_peer && t->creds_dir == NULL)
		return cli_usage_error(who, "--tls-verify-peer needs --tls-creds DIR");
	if (t->mode == NBD_TLS_OFF && creds)
		return cli_usage_error(who, "--tls=off contradicts --tls-psk and --tls-creds");
	if (t->mode == NBD_TLS_REQUIRE && !creds)
		return cli_usage_error(who,
		                       "--tls=require needs --tls-psk FILE or --tls-creds DIR");
	if (t->mode == NBD_TLS_UNSET && !creds && strncmp(export_spec, "unix:", 5) != 0)
		return cli_usage_error(
		    who,
		    "-e %s would serve the disk over TCP without TLS: add "
		    "--tls-psk FILE or --tls-creds DIR, or --tls=off to allow it",
		    export_spec);
	if (creds)
		t->mode = NBD_TLS_REQUIRE;
	return CMD_PROCEED;
}

int export_tls_load(const struct nbd_tls_opts *t, struct nbd_tls_creds **cr)
{
	*cr = NULL;
	if (t->mode != NBD_TLS_REQUIRE)
		return 0;
	*cr = nbd_tls_creds_load(t);
	if (*cr == NULL)
		return -1;
	log_info("NBD export: TLS required (%s)", nbd_tls_creds_kind(*cr));
	return 0;
}
