/* SPDX-License-Identifier: ISC */
/*
 * main: the p2pvbd command line. Finds the command in the table and runs it;
 * each command is one file (cmd_*.c). The work itself is in swarm, store,
 * scan and manifest.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "util.h"
#include "vcrypto.h"
#include "version.h"

/* Glibc's malloc: blocks from this size on get their own mmap; heap top kept up to this. */
#define MALLOC_MMAP_THRESHOLD (64 * 1024 * 1024)
#define MALLOC_TRIM_THRESHOLD (256 * 1024 * 1024)

/* The commands, in the order p2pvbd --help lists them. */
static const struct cmd_entry *const cmd_table[] = {
    &cmd_keygen_entry, &cmd_seed_entry, &cmd_fetch_entry, &cmd_status_entry, &cmd_ctl_entry,
};

/* p2pvbd --help: what it is, then one line per command of the table. */
static void usage(void)
{
	char synopsis[64];

	fputs("usage: p2pvbd COMMAND [OPTIONS] ...\n"
	      "\n"
	      "Live migration of virtual machine disks, peer to peer.\n"
	      "\n"
	      "commands:\n",
	      stdout);
	for (size_t i = 0; i < ARRAY_LEN(cmd_table); i++) {
		snprintf(synopsis, sizeof(synopsis), "%s %s", cmd_table[i]->name,
		         cmd_table[i]->args);
		printf("  %-23s %s\n", synopsis, cmd_table[i]->summary);
	}
	fputs("\n"
	      "Run 'p2pvbd COMMAND --help' for a command's options.\n"
	      "Exit codes: 0 success, 1 failure, 2 usage error.\n",
	      stdout);
}

int main(int argc, char **argv)
{
	const char *cmd;

	signal(SIGPIPE, SIG_IGN);
	opterr = 0; /* cli_usage_error says what was wrong, in one line */
	/*
	 * Chunk buffers and frames of a few hundred KiB are allocated and freed
	 * all the time. By default glibc serves them with fresh mmaps (or trims
	 * the heap after them), so every one costs page faults on first touch;
	 * keeping them in the heap lets freed memory be reused warm.
	 */
	mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
	mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
	log_init("p2pvbd", LOG_LEVEL_INFO);
	if (argc < 2)
		return cli_usage_error("p2pvbd", "no command given");
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		usage();
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("p2pvbd %s (protocol version 1)\n", P2PVBD_VERSION);
		return 0;
	}
	if (vcrypto_init() != 0) {
		fprintf(stderr, "p2pvbd: cannot initialise libsodium\n");
		return 1;
	}
	for (size_t i = 0; i < ARRAY_LEN(cmd_table); i++)
		if (strcmp(cmd, cmd_table[i]->name) == 0)
			return cmd_table[i]->exec(argc - 1, argv + 1);
	return cli_usage_error("p2pvbd", "unknown command '%s'", cmd);
}
