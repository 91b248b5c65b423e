/* SPDX-License-Identifier: ISC */
/*
 * seed_int.h: the private header of `p2pvbd seed`, shared by seed_opts.c
 * (the command line), cmd_seed.c (the image, the hash, serving) and
 * seed_qmp.c (seed --qmp --drive: attaching to a VM that runs on its own
 * disk): the parsed options, the running seed, and what each file calls of
 * the others, grouped by file.
 */
#ifndef P2PVBD_CLI_SEED_INT_H
#define P2PVBD_CLI_SEED_INT_H

#include <stdint.h>

#include <event2/event.h>

#include "internal.h"
#include "manifest.h"
#include "nbd_tls.h"
#include "uri.h"
#include "vcrypto.h"
#include "vmattach.h"

struct imglock;
struct imgsrc;
struct migrate;
struct nbd_server;
struct nbd_tls_creds;
struct seedgen;
struct swarm;

/* --receipt-from names at most this many destinations: a bound for a list read by hand. */
#define SEED_RECEIPT_FROM_MAX 256

/* The command line, parsed and checked for syntax (seed_parse). */
struct seed_opts {
	const char *image, *key_path, *uri_file, *export_spec, *ctl_path, *metrics_spec;
	const char *listen_spec, *state_dir;
	const char *trackers[URI_MAX_PEERS];
	int ntrackers;
	struct uri_peer listen_at, metrics_at, advertise[URI_MAX_PEERS];
	int nadvertise;
	struct nbd_tls_opts tls;
	uint64_t receipts, threads, timeout_s, chunk_size, rate, max_dirty, downtime_ms;
	int hash_only, loglvl, freeze_on_disc, write_through, no_auto_converge;
	uint8_t volume_id[MANIFEST_ID_LEN], secret[VCRYPTO_SECRET_LEN]; /* secret: wiped at exit */
	int have_volid, have_secret;
	const char *receipt_from[SEED_RECEIPT_FROM_MAX]; /* --receipt-from: keys or .pub files */
	int nreceipt_from;
	/*
	 * --qmp SOCKET --drive DRIVE: the VM to attach to. image and export_spec
	 * then name the scratch copy and the seed's own export for QEMU (made
	 * from --state-dir and the tag; owned: qmp_image, qmp_export).
	 */
	const char *qmp_path, *drive;
	char qmp_tag[VMATTACH_TAG_LEN + 1];
	char *qmp_image, *qmp_export;
};

/* A running seed: what seed_free releases. */
struct seed {
	const struct seed_opts *o;
	struct vcrypto_identity id;
	int fd;
	struct imglock *ilock;
	/* The image to read: the file fd, or an NBD server (IMAGE a URI). */
	struct imgsrc *src;
	/* bytes_read: by the hash (what block status says reads as zeros is not read). */
	uint64_t image_size, t0, bytes_read;
	struct manifest_entry *entries; /* the hash, until the manifest owns it */
	struct manifest m;
	struct event_base *base;
	struct swarm *sw;
	uint16_t port;
	struct nbd_server *srv;
	struct nbd_tls_creds *tls; /* -e with TLS */
	struct cmd_ctl_server cs;
	struct migrate *mig; /* --qmp: ctl migrate */
	struct seedgen *gen; /* the generation record, or NULL (--hash-only, or none possible) */
	uint8_t volume_id[MANIFEST_ID_LEN],
	    secret[VCRYPTO_SECRET_LEN]; /* given or made; secret: wiped */
	uint8_t receipt_from[SEED_RECEIPT_FROM_MAX][VCRYPTO_PK_LEN]; /* --receipt-from, read */
	/* --qmp: the QMP side, the drive, and whether attaching failed (exit 1). */
	struct vmattach *va;
	struct vmattach_drive drv;
	int va_started, va_serving, va_failed;
};

/* seed_opts.c: the command line. */

/* The whole `p2pvbd seed --help`. */
extern const char usage_seed[];
/* The command line into o (syntax only; nothing is opened): CMD_PROCEED or the exit code. */
int seed_parse(int argc, char **argv, struct seed_opts *o);

/* cmd_seed.c */

/* The volume URI on stdout (and in --uri-file); 0 or -1 (logged). */
int seed_write_uri(const struct seed *s);

/* seed_qmp.c: seed --qmp --drive, a VM that runs on its own disk (vmattach.h). */

/*
 * --qmp, first of all: the state directory (made if missing), and the
 * scratch copy opened and locked. 0 or -1 (logged).
 */
int seed_qmp_prepare(struct seed *s);
/*
 * The scratch copy instead of an IMAGE: connect to QEMU, learn the drive,
 * size the copy (s->image_size). 0 or -1 (logged).
 */
int seed_open_scratch(struct seed *s);
/* Start attaching (QMP thread); the loop then serves QEMU's copy. 0 or -1 (logged). */
int seed_qmp_attach(struct seed *s);
/* The loop has stopped: detach from QEMU, running the loop until the QMP side is done. */
void seed_qmp_detach(struct seed *s);

#endif
