/* SPDX-License-Identifier: ISC */
/*
 * cmd_seed: `p2pvbd seed`, on the source host. Hashes the image into chunks,
 * signs the manifest, prints the volume URI and serves the chunks until
 * stopped (or until enough receipts arrived); with -e it also exports the
 * image over NBD to the VM running at the source (live migration); with
 * --qmp it attaches to a VM that runs on its own disk (seed_qmp.c). The
 * command line is parsed in seed_opts.c; the structs the files share are in
 * seed_int.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>
#include <systemd/sd-daemon.h>

#include "imglock.h"
#include "imgsrc.h"
#include "internal.h"
#include "manifest.h"
#include "migrate.h"
#include "nbd.h"
#include "scan.h"
#include "seed_int.h"
#include "sockpath.h"
#include "swarm.h"
#include "seedgen.h"
#include "uri.h"
#include "util.h"
#include "vcrypto.h"
#include "vmattach.h"

/* ---- before the hash --------------------------------------------------- */

/* Checks before the hash, which may take minutes; 0 or -1 (logged). */
static int seed_check(const struct seed_opts *o)
{
	if (cli_check_bind(o->listen_at.host, o->listen_at.port, "--listen") != 0 ||
	    (o->metrics_spec != NULL &&
	     cli_check_bind(o->metrics_at.host, o->metrics_at.port, "--metrics") != 0) ||
	    (o->export_spec != NULL && cli_check_export(o->export_spec) != 0) ||
	    (o->ctl_path != NULL && cli_check_socket_path(o->ctl_path, "control socket") != 0) ||
	    (o->uri_file != NULL && cli_check_writable(o->uri_file, "--uri-file") != 0))
		return -1;
	for (int i = 0; i < o->ntrackers; i++)
		if (cli_check_tracker(o->trackers[i]) != 0)
			return -1;
	return 0;
}

/*
 * The --receipt-from keys into s->receipt_from: 64 hex digits are the key,
 * anything else is the path of a public key file (PATH.pub). 0 or -1 (logged).
 */
static int seed_receipt_from(struct seed *s)
{
	const struct seed_opts *o = s->o;

	for (int i = 0; i < o->nreceipt_from; i++) {
		const char *a = o->receipt_from[i];

		if (strlen(a) == 2 * VCRYPTO_PK_LEN &&
		    hex_decode(a, strlen(a), s->receipt_from[i], VCRYPTO_PK_LEN) == 0)
			continue;
		if (vcrypto_pubkey_load(a, s->receipt_from[i]) != 0) {
			log_error("--receipt-from %s is neither a public key (64 hex digits) nor a "
			          "readable public key file",
			          a);
			return -1;
		}
	}
	return 0;
}

static int image_size_of(int fd, const char *path, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) != 0) {
		log_error("%s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, size) != 0) {
			log_error("%s: cannot get the device size: %s", path, strerror(errno));
			return -1;
		}
	} else if (S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
	} else {
		log_error("%s: not a regular file or block device", path);
		return -1;
	}
	if (*size == 0) {
		log_error("%s: the image is empty", path);
		return -1;
	}
	return 0;
}

/*
 * An NBD URI as IMAGE: connect to its server with libnbd and learn the size.
 * No lock: the server (qemu-nbd, QEMU) holds the image's own. 0 or -1 (logged).
 */
static int seed_open_nbd(struct seed *s)
{
	if (imgsrc_nbd_open(s->o->image, &s->src) != 0)
		return -1;
	s->image_size = imgsrc_size(s->src);
	return 0;
}

/* Open and lock an image file (read-write with -e) and learn its size; 0 or -1 (logged). */
static int seed_open_file(struct seed *s)
{
	const struct seed_opts *o = s->o;

	s->fd = open(o->image, (o->export_spec ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (s->fd < 0) {
		log_error("cannot open %s: %s", o->image, strerror(errno));
		return -1;
	}
	/* Held until exit: QEMU and other p2pvbd processes see how we use the image. */
	if (imglock_acquire(o->image, s->fd,
	                    o->export_spec ? IMGLOCK_EXCLUSIVE : IMGLOCK_SHARED_READ,
	                    &s->ilock) != 0)
		return -1;
	return image_size_of(s->fd, o->image, &s->image_size);
}

/*
 * Open the image (--qmp: the scratch copy; an NBD URI: its server; else the
 * file, locked, read-write with -e), learn its size, and make s->src, what
 * the hash and the swarm read it through. 0 or -1 (logged).
 */
static int seed_open_image(struct seed *s)
{
	const struct seed_opts *o = s->o;
	int rc;

	if (o->drive != NULL)
		rc = seed_open_scratch(s);
	else if (imgsrc_is_nbd_uri(o->image))
		rc = seed_open_nbd(s);
	else
		rc = seed_open_file(s);
	if (rc != 0)
		return -1;
	if (s->src == NULL)
		s->src = imgsrc_file(s->fd, s->image_size);
	if ((s->image_size + o->chunk_size - 1) / o->chunk_size > MANIFEST_MAX_CHUNKS) {
		log_error("%s: too many chunks; use a larger --chunk-size", o->image);
		return -1;
	}
	return 0;
}

/* ---- the hash and the manifest ----------------------------------------- */

struct scan_display {
	int tty;
	uint64_t start_ns;
};

static void scan_progress(uint64_t done, uint64_t total, void *arg)
{
	struct scan_display *d = arg;
	double secs = (double)(now_ns() - d->start_ns) / 1e9;
	char b1[16], b2[16], b3[16];

	if (!d->tty)
		return;
	fprintf(stderr, "\rhashing: %5.1f%%  %s / %s  %s/s   ",
	        total ? 100.0 * done / total : 100.0, fmt_bytes(done, b1, sizeof(b1)),
	        fmt_bytes(total, b2, sizeof(b2)),
	        fmt_bytes(secs > 0 ? (uint64_t)(done / secs) : 0, b3, sizeof(b3)));
	if (done == total)
		fputc('\n', stderr);
}

/* Hash the image into s->entries with every core (or --threads); 0 or -1 (logged). */
static int seed_hash(struct seed *s)
{
	const struct seed_opts *o = s->o;
	struct scan_display disp;

	s->entries = xcalloc(manifest_chunk_count(s->image_size, (uint32_t)o->chunk_size),
	                     sizeof(*s->entries));
	disp.tty = isatty(STDERR_FILENO) && o->loglvl >= LOG_LEVEL_INFO;
	disp.start_ns = s->t0 = now_ns();
	return scan_source(s->src, (uint32_t)o->chunk_size, 0, (int)o->threads, s->entries,
	                   scan_progress, &disp, &s->bytes_read);
}

/* --hash-only: the hash's timing as JSON on stdout. */
static void seed_print_timing(const struct seed *s)
{
	printf("{\"hash_seconds\":%.6f,\"bytes\":%llu,\"chunks\":%u,\"bytes_read\":%llu}\n",
	       (double)(now_ns() - s->t0) / 1e9, (unsigned long long)s->image_size,
	       manifest_chunk_count(s->image_size, (uint32_t)s->o->chunk_size),
	       (unsigned long long)s->bytes_read);
}

/*
 * Where the generation record of an NBD source goes, as a path prefix: there
 * is no IMAGE file beside which to keep it, so it is DIR/nbd-HASH, HASH the
 * first 16 bytes of BLAKE2b-256 of the URI as written (two sources never
 * share a record; the same source named by another spelling gets another),
 * DIR --state-dir or else CLI_BLOCKDEV_STATE_DIR. NULL (logged) if DIR
 * cannot be made. Caller frees.
 */
static char *seed_nbd_sidecar(const struct seed_opts *o)
{
	uint8_t h[VCRYPTO_HASH_LEN];
	char hex[2 * 16 + 1], name[64];

	vcrypto_hash(h, o->image, strlen(o->image));
	hex_encode(h, 16, hex);
	snprintf(name, sizeof(name), "nbd-%s", hex);
	return cli_sidecar(name, o->state_dir != NULL ? o->state_dir : CLI_BLOCKDEV_STATE_DIR);
}

/*
 * The generation record (seedgen.h): *known says whether it names this
 * volume, info what it holds. Without -e the record is only a safeguard
 * (the image is fixed while served): one that cannot be kept is a warning
 * (s->gen stays NULL); with -e it is an error. 0 or -1 (logged).
 */
static int seed_record(struct seed *s, int *known, struct seedgen_info *info)
{
	const struct seed_opts *o = s->o;
	char *prefix, *path;
	int rc;

	*known = 0;
	if (imgsrc_is_nbd(s->src))
		prefix = seed_nbd_sidecar(o);
	else
		prefix = cli_sidecar(o->image, o->state_dir);
	if (prefix == NULL && o->export_spec == NULL)
		log_warn("no generation record (use --state-dir DIR): if this volume is seeded "
		         "again after IMAGE changed, destinations refuse it");
	if (prefix == NULL)
		return o->export_spec != NULL ? -1 : 0;
	path = xasprintf("%s%s", prefix, SEEDGEN_SUFFIX);
	rc = seedgen_open(path, s->volume_id, o->export_spec != NULL ? SEEDGEN_STEP_LIVE : 0,
	                  &s->gen, known, info);
	if (rc != 0 && o->export_spec != NULL) {
		log_error("seed -e keeps its generations in %s (use --state-dir DIR to keep them "
		          "elsewhere)",
		          path);
	} else if (rc != 0) {
		log_warn("no generation record (%s): if this volume is seeded again after IMAGE "
		         "changed, destinations refuse it",
		         path);
		rc = 0;
	} else if (imgsrc_is_nbd(s->src)) {
		log_info("the generation record of %s is %s", o->image, path);
	}
	free(path);
	free(prefix);
	return rc;
}

/* Build and sign the manifest of s->entries at generation gen (it takes them); 0 or -1. */
static int seed_build(struct seed *s, uint64_t gen, struct manifest_entry *entries)
{
	const struct seed_opts *o = s->o;

	/* After a restart every chunk may differ from what was published: all
	 * of them are (re)published at the new generation (PROTOCOL.md §9.4). */
	for (uint32_t i = 0; i < manifest_chunk_count(s->image_size, (uint32_t)o->chunk_size); i++)
		entries[i].gen = gen;
	if (manifest_build(&s->m, s->volume_id, s->image_size, (uint32_t)o->chunk_size, gen,
	                   entries, s->id.sk) != 0) {
		log_error("cannot build the manifest");
		return -1;
	}
	/* Without a VM here the image never changes: its generation is final. */
	if (o->export_spec == NULL)
		manifest_set_flags(&s->m, MANIFEST_ROOT_F_FINAL, s->id.sk);
	else if (o->write_through)
		manifest_set_flags(&s->m, MANIFEST_ROOT_F_WRITE_THROUGH, s->id.sk);
	return 0;
}

/*
 * Sign the manifest of the hashed image (it takes s->entries) at the right
 * generation: 0 for a volume new here; else above every generation the
 * record says may have been published, except that a fixed image whose
 * bytes are those of the root last published publishes that root again
 * (its receipts stay good). 0 or -1 (logged).
 */
static int seed_sign(struct seed *s)
{
	const struct seed_opts *o = s->o;
	static const uint8_t none[VCRYPTO_HASH_LEN];
	struct seedgen_info info;
	uint32_t n = manifest_chunk_count(s->image_size, (uint32_t)o->chunk_size), zero = 0;
	uint64_t gen;
	int known;
	char sz[16], rd[16], hex[2 * MANIFEST_ID_LEN + 1];

	if (o->have_volid)
		memcpy(s->volume_id, o->volume_id, sizeof(s->volume_id));
	else
		vcrypto_random(s->volume_id, sizeof(s->volume_id));
	if (o->have_secret)
		memcpy(s->secret, o->secret, sizeof(s->secret));
	else
		vcrypto_random(s->secret, sizeof(s->secret));
	hex_encode(s->volume_id, MANIFEST_ID_LEN, hex);
	memset(&info, 0, sizeof(info));
	if (seed_record(s, &known, &info) != 0)
		return -1;
	gen = known ? info.reserved + 1 : 0;
	if (known && o->export_spec == NULL && info.root_gen == info.reserved &&
	    memcmp(info.root_hash, none, sizeof(none)) != 0) {
		/* The last root published, and nothing after it: is it this image's? */
		struct manifest_entry *copy = xmalloc((size_t)n * sizeof(*copy));

		memcpy(copy, s->entries, (size_t)n * sizeof(*copy));
		if (seed_build(s, info.root_gen, copy) != 0)
			return -1;
		if (memcmp(s->m.root.root_hash, info.root_hash, VCRYPTO_HASH_LEN) == 0)
			gen = info.root_gen;
		else
			manifest_free(&s->m);
	}
	if (gen > info.root_gen || !known) {
		if (seed_build(s, gen, s->entries) != 0)
			return -1;
		s->entries = NULL; /* owned by m */
	}
	if (s->gen != NULL &&
	    (o->export_spec != NULL ? seedgen_reserve(s->gen, gen)
	                            : seedgen_set_root(s->gen, gen, s->m.root.root_hash)) != 0)
		return -1;
	if (known && gen > info.root_gen)
		log_info("volume %s: going on at generation %llu, above every generation "
		         "published before",
		         hex, (unsigned long long)gen);
	else if (known)
		log_info("volume %s: the image is as published at generation %llu", hex,
		         (unsigned long long)gen);
	else if (o->have_volid)
		log_info("volume %s: no generation of it was published from here: starting at "
		         "generation 0",
		         hex);
	for (uint32_t i = 0; i < s->m.root.chunk_count; i++)
		zero += (s->m.entries[i].flags & MANIFEST_F_ZERO) != 0;
	log_info("%s: %s, %u chunks of %llu KiB (%u zero), hashed in %.2f s, %s read", o->image,
	         fmt_bytes(s->image_size, sz, sizeof(sz)), s->m.root.chunk_count,
	         (unsigned long long)o->chunk_size / 1024, zero, (double)(now_ns() - s->t0) / 1e9,
	         fmt_bytes(s->bytes_read, rd, sizeof(rd)));
	return 0;
}

/* ---- serving ----------------------------------------------------------- */

/* The swarm of the signed manifest, listening (s->port); 0 or -1 (logged). */
static int seed_swarm(struct seed *s)
{
	const struct seed_opts *o = s->o;
	struct swarm_opts so;

	s->base = event_base_new();
	memset(&so, 0, sizeof(so));
	so.role = SWARM_SEED;
	so.base = s->base;
	so.identity = &s->id;
	memcpy(so.volume_id, s->volume_id, sizeof(s->volume_id));
	memcpy(so.source_key, s->id.pk, sizeof(so.source_key));
	memcpy(so.join_secret, s->secret, sizeof(s->secret));
	so.timeout_s = (int)o->timeout_s;
	so.upload_rate = o->rate;
	so.manifest = &s->m;
	so.image_src = s->src;
	so.image_fd = s->fd;
	so.exit_after_receipts = (int)o->receipts;
	so.receipt_from = (const uint8_t(*)[VCRYPTO_PK_LEN])s->receipt_from;
	so.nreceipt_from = o->nreceipt_from;
	so.max_dirty_rate = o->max_dirty;
	so.write_through = o->write_through;
	so.downtime_target_ms = (uint32_t)o->downtime_ms;
	so.no_auto_converge = o->no_auto_converge;
	so.image_path = o->image;
	so.trackers = o->trackers;
	so.ntrackers = o->ntrackers;
	so.image_fixed = o->export_spec == NULL;
	so.seedgen = s->gen;
	/* --qmp: the bulk copy is not rate-capped; the cap comes with READY. */
	so.max_dirty_rate = o->drive != NULL ? 0 : o->max_dirty;
	s->sw = swarm_new(&so);
	/* --qmp: peers are served only once the VM's disk is copied (seed_qmp_ready). */
	if (o->drive != NULL)
		return 0;
	return swarm_listen(s->sw, o->listen_at.host, o->listen_at.port, &s->port);
}

/* The volume URI on stdout (and in --uri-file); 0 or -1 (logged). */
int seed_write_uri(const struct seed *s)
{
	const struct seed_opts *o = s->o;
	struct uri u;
	char uri_text[URI_MAX_LEN];

	memset(&u, 0, sizeof(u));
	memcpy(u.volume_id, s->volume_id, sizeof(s->volume_id));
	memcpy(u.key, s->id.pk, sizeof(u.key));
	memcpy(u.secret, s->secret, sizeof(s->secret));
	for (int i = 0; i < o->ntrackers; i++)
		snprintf(u.tracker[i], sizeof(u.tracker[i]), "%s", o->trackers[i]);
	u.ntrackers = o->ntrackers;
	if (o->nadvertise > 0) {
		memcpy(u.peer, o->advertise, (size_t)o->nadvertise * sizeof(o->advertise[0]));
		u.npeers = o->nadvertise;
	} else {
		u.npeers = 1;
		u.peer[0] = o->listen_at;
		u.peer[0].port = s->port;
		if (strcmp(o->listen_at.host, "0.0.0.0") == 0 ||
		    strcmp(o->listen_at.host, "::") == 0) {
			if (gethostname(u.peer[0].host, sizeof(u.peer[0].host)) != 0)
				snprintf(u.peer[0].host, sizeof(u.peer[0].host), "localhost");
		}
	}
	if (uri_format(&u, uri_text, sizeof(uri_text)) < 0) {
		log_error("the URI does not fit %d bytes", URI_MAX_LEN);
		return -1;
	}
	printf("%s\n", uri_text);
	fflush(stdout);
	if (o->uri_file != NULL) {
		char *line = xasprintf("%s\n", uri_text);
		int w = cli_write_file_atomic(o->uri_file, line);

		free(line);
		if (w != 0)
			return -1;
	}
	return 0;
}

/* -e: the NBD export for the VM at the source; 0 or -1 (logged). */
static int seed_export(struct seed *s)
{
	s->srv = nbd_server_new(s->base, s->sw, s->o->export_spec, s->tls);
	if (s->srv == NULL)
		return -1;
	if (s->o->drive == NULL) {
		printf("exporting on %s\n", nbd_server_address(s->srv));
		fflush(stdout);
	}
	log_info("NBD export on %s", nbd_server_address(s->srv));
	if (s->o->freeze_on_disc)
		nbd_server_set_idle_cb(s->srv, cmd_ctl_freeze_on_idle, s->sw);
	return 0;
}

/* Metrics, control socket, signals; then serve until the swarm stops. 0 or -1 (logged). */
static int seed_serve(struct seed *s)
{
	const struct seed_opts *o = s->o;

	if (o->qmp_path != NULL) {
		if ((s->mig = migrate_new(s->base, s->sw, o->qmp_path, s->va)) == NULL)
			return -1;
		s->cs.mig = s->mig;
	}
	if (cmd_ctl_server_start(&s->cs, s->base, s->sw, "seed", o->ctl_path,
	                         o->metrics_spec ? &o->metrics_at : NULL) != 0)
		return -1;
	if (o->drive != NULL) {
		/* The swarm starts once QEMU's copy is READY (seed_qmp_ready). */
		if (seed_qmp_attach(s) != 0)
			return -1;
	} else {
		swarm_start(s->sw);
		/* Under systemd (Type=notify): the URI is out and the chunks are served. */
		sd_notifyf(0, "READY=1\nSTATUS=serving %s on port %u", o->image, (unsigned)s->port);
	}
	event_base_dispatch(s->base);
	sd_notify(0, "STOPPING=1");
	seed_qmp_detach(s);
	return 0;
}

/* What was served, at exit. */
static void seed_summary(const struct seed *s)
{
	const struct swarm_stats *st = swarm_stats(s->sw);
	char b[16];

	log_info("served %s; %llu receipts", fmt_bytes(st->bytes_served, b, sizeof(b)),
	         (unsigned long long)st->receipts);
	if (s->o->export_spec != NULL)
		log_info("the VM wrote %s into %llu chunks since they were hashed",
		         fmt_bytes(st->bytes_written, b, sizeof(b)),
		         (unsigned long long)st->chunks_dirty);
}

static void seed_free(struct seed *s)
{
	migrate_stop(s->mig); /* first: it may still answer a ctl client */
	/* The export next: QMP work still queued then never waits on it. */
	nbd_server_free(s->srv);
	vmattach_free(s->va); /* runs what is queued, the migration's jobs too */
	migrate_free(s->mig);
	nbd_tls_creds_free(s->tls);
	cmd_ctl_server_stop(&s->cs);
	swarm_free(s->sw);
	imgsrc_free(s->src);
	if (s->base)
		event_base_free(s->base);
	manifest_free(&s->m);
	free(s->entries);
	imglock_release(s->ilock);
	seedgen_close(s->gen);
	if (s->fd >= 0)
		close(s->fd);
	vcrypto_identity_wipe(&s->id);
	vcrypto_wipe(s->secret, sizeof(s->secret));
}

/* Every step after the command line, in order; the exit code. */
static int seed_run(struct seed *s)
{
	const struct seed_opts *o = s->o;

	if (vcrypto_identity_load(o->key_path, &s->id) != 0)
		return 1;
	if (o->drive != NULL && seed_qmp_prepare(s) != 0)
		return 1;
	if ((!o->hash_only && (seed_check(o) != 0 || seed_receipt_from(s) != 0 ||
	                       export_tls_load(&o->tls, &s->tls) != 0)) ||
	    seed_open_image(s) != 0 || seed_hash(s) != 0)
		return 1;
	if (o->hash_only) {
		seed_print_timing(s);
		return 0;
	}
	if (seed_sign(s) != 0 || seed_swarm(s) != 0 || (o->drive == NULL && seed_write_uri(s) != 0))
		return 1;
	if (o->drive == NULL)
		log_info("serving on %s:%u", o->listen_at.host, s->port);
	if ((o->export_spec != NULL && seed_export(s) != 0) || seed_serve(s) != 0)
		return 1;
	seed_summary(s);
	return swarm_result(s->sw) == 0 && !s->va_failed ? 0 : 1;
}

static int cmd_seed(int argc, char **argv)
{
	struct seed_opts o;
	struct seed s;
	int rc = seed_parse(argc, argv, &o);

	if (rc == CMD_PROCEED) {
		log_init("p2pvbd seed", o.loglvl);
		memset(&s, 0, sizeof(s));
		s.o = &o;
		s.fd = -1;
		rc = seed_run(&s);
		seed_free(&s);
	}
	vcrypto_wipe(o.secret, sizeof(o.secret));
	free(o.qmp_image);
	free(o.qmp_export);
	return rc;
}

const struct cmd_entry cmd_seed_entry = {
    .name = "seed",
    .args = "[OPTIONS] IMAGE",
    .summary = "hash IMAGE, sign its manifest, serve it; prints the volume URI",
    .usage = usage_seed,
    .exec = cmd_seed,
};
