/* SPDX-License-Identifier: ISC */
/*
 * cmd_fetch: `p2pvbd fetch URI OUT`, on each destination. Joins the swarm,
 * fetches and verifies the chunks into OUT, serves what it holds to other
 * peers and, with -e, exports OUT over NBD to the local VM while it arrives.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "imglock.h"
#include "internal.h"
#include "nbd.h"
#include "parse.h"
#include "peer.h"
#include "sockpath.h"
#include "store.h"
#include "swarm.h"
#include "uri.h"
#include "util.h"
#include "vcrypto.h"

/* Seconds a fetch waits without any progress before it gives up. */
#define FETCH_GIVE_UP_DEFAULT 300
#define KEY_SUFFIX            ".p2pvbd-key"
/* Sidecar files of a block-device OUT, unless --state-dir says otherwise (never /dev). */
/* Option bounds, in seconds: --timeout, --give-up. */
#define FETCH_TIMEOUT_MAX 3600
#define FETCH_GIVE_UP_MAX 1000000
/* Usage errors name the command so. */
#define FETCH_WHO "p2pvbd fetch"

static const char usage_fetch[] =
    "usage: p2pvbd fetch [OPTIONS] URI OUT\n"
    "\n"
    "Join the volume named by URI, fetch and verify every chunk into OUT (sparse:\n"
    "zero chunks stay holes), and exit 0 once OUT is complete and verified and the\n"
    "completion receipt was sent to the source. Progress is kept in OUT.p2pvbd-state:\n"
    "run the same command again after an interruption to resume. URI may be @FILE:\n"
    "the URI is read from the first line of FILE (keeps the secret out of ps).\n"
    "\n"
    "With -e, OUT is also exported over NBD while it arrives: a VM can run on it at\n"
    "once; the chunks it reads are fetched before anything else. fetch then keeps\n"
    "serving after completion until SIGINT/SIGTERM (everything flushed on exit).\n"
    "\n"
    "  -e, --export ADDR    export over NBD on unix:PATH or HOST:PORT (numeric host)\n"
    "      --tls-psk FILE   with -e: require TLS with pre-shared keys; FILE has\n"
    "                       USERNAME:HEXKEY lines (psktool -u NAME -p FILE)\n"
    "      --tls-creds DIR  with -e: require TLS with X.509 certificates:\n"
    "                       DIR/server-cert.pem and server-key.pem, as QEMU's\n"
    "                       tls-creds-x509 endpoint=server lays them out\n"
    "      --tls-verify-peer\n"
    "                       with --tls-creds: clients need a certificate signed by\n"
    "                       DIR/ca-cert.pem\n"
    "      --tls MODE       off or require (implied by --tls-psk, --tls-creds);\n"
    "                       -e HOST:PORT needs TLS or --tls=off (plaintext: anyone\n"
    "                       who reaches the port can read and write the disk)\n"
    "  -l, --listen ADDR    also serve verified chunks to other destinations on\n"
    "                       HOST:PORT (port 0 picks one; printed as 'listening on').\n"
    "                       Default with a tracker in the URI: 0.0.0.0:0\n"
    "      --no-listen      do not accept peers, even with a tracker in the URI\n"
    "      --basis FILE     an older copy of the image: chunks whose hash matches are\n"
    "                       copied from it instead of fetched (only changes travel)\n"
    "      --mirror         keep serving after completion (until SIGINT/SIGTERM)\n"
    "      --qmp SOCKET     with -e and --drive: once OUT is complete at the final\n"
    "                       generation (and QEMU's incoming migration is done), move\n"
    "                       the drive of the QEMU at this QMP socket from the export\n"
    "                       onto OUT itself while the guest runs, then exit 0. Give\n"
    "                       fetch a QMP socket of its own (QEMU serves one client\n"
    "                       per socket). Not with --mirror: OUT is the VM's then\n"
    "      --drive ID       the drive to move: a -drive id, a -device id, or a node\n"
    "                       name; a raw drive on the export. It moves onto a new node\n"
    "                       p2pvbd-local-ID on OUT (blockdev-reopen, or a mirror job\n"
    "                       for -drive's nodes); OUT's state file is removed\n"
    "      --no-boost       no priority for the VM's reads (benchmark control)\n"
    "      --lazy           with -e: fetch only the chunks the VM touches (pure\n"
    "                       postcopy; the image completes only if all is read)\n"
    "  -k, --key PATH       identity that signs the receipt (default: OUT.p2pvbd-key,\n"
    "                       made on first use)\n"
    "      --state-dir DIR  keep the sidecar files (OUT.p2pvbd-state, -key, -pages)\n"
    "                       in DIR, named after OUT's file name; default: beside OUT,\n"
    "                       or " CLI_BLOCKDEV_STATE_DIR " for a block device\n"
    "      --stats PATH     write counters as JSON to PATH at exit\n"
    "      --ctl PATH       control socket (default $XDG_RUNTIME_DIR or /tmp,\n"
    "                       p2pvbd-fetch-PID.ctl; logged at start): p2pvbd status\n"
    "      --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
    "                       (port 0 picks one; logged)\n"
    "      --progress-log PATH  append \"UNIX-TIME BYTES-DONE BYTES-TOTAL\" lines to PATH\n"
    "                       every 0.2 s (for plots)\n"
    "      --timeout SECS   drop a peer silent this long (default 30; also 30s, 2m),\n"
    "                       and one not authenticated within it (10 s at most)\n"
    "      --give-up SECS   fail after this long without progress (default 300)\n"
    "      --force          overwrite an existing OUT that has no state file\n"
    "      --no-progress    no progress display\n"
    "  -q, --quiet          only errors on stderr, no progress\n"
    "  -v, --verbose        debug log\n"
    "  -h, --help           this text\n"
    "\n"
    "SIGINT, SIGTERM and SIGHUP stop it cleanly (flushed; run again to resume).\n";

/* The command line, parsed and checked for syntax (fetch_parse). */
struct fetch_opts {
	const char *key_path, *stats_path, *export_spec, *metrics_spec, *basis, *progress_log;
	const char *ctl_path, *state_dir, *listen_spec, *out;
	const char *qmp_path, *drive; /* --qmp, --drive: move the VM onto OUT at the end */
	struct uri_peer listen_at, metrics_at;
	struct nbd_tls_opts tls;
	int no_boost, lazy, mirror, no_listen, force, show_progress, loglvl;
	uint64_t timeout_s, give_up;
	char *uri_text; /* owned, URI_MAX_LEN + 1 bytes; wiped */
	struct uri *u;  /* owned; wiped */
};

/* The NBD export of a fetch, started once the volume is known. */
struct export_ctx {
	struct event_base *base;
	struct swarm *sw;
	const char *spec;
	struct nbd_tls_creds *tls; /* owned; NULL without TLS */
	struct nbd_server *srv;
};

/* A running fetch: what fetch_free releases. */
struct fetch {
	const struct fetch_opts *o;
	uint64_t t0;   /* when the command started */
	char *sidecar; /* owned */
	int made_key;  /* this run made the identity (taken back if it fails) */
	struct vcrypto_identity id;
	const char *trackers[URI_MAX_PEERS]; /* borrowed by the swarm, from o->u */
	struct event_base *base;
	struct swarm *sw;
	struct export_ctx ex;
	struct progress *pr;
	struct progress_log *pl;
	struct cmd_ctl_server cs;
	struct fetch_pivot *pv; /* --qmp; NULL without */
	int moved;              /* --qmp: the VM runs on OUT now */
};

/* ---- the command line -------------------------------------------------- */

enum {
	O_STATS = 256,
	O_TIMEOUT,
	O_GIVE_UP,
	O_FORCE,
	O_NO_PROGRESS,
	O_NO_BOOST,
	O_LAZY,
	O_MIRROR,
	O_NO_LISTEN,
	O_BASIS,
	O_PROGRESS_LOG,
	O_CTL,
	O_STATE_DIR,
	O_METRICS,
	O_QMP,
	O_DRIVE
};

static const struct option fetch_options[] = {
    {"key", required_argument, NULL, 'k'},
    {"state-dir", required_argument, NULL, O_STATE_DIR},
    {"stats", required_argument, NULL, O_STATS},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"give-up", required_argument, NULL, O_GIVE_UP},
    {"force", no_argument, NULL, O_FORCE},
    {"no-progress", no_argument, NULL, O_NO_PROGRESS},
    {"export", required_argument, NULL, 'e'},
    {"no-boost", no_argument, NULL, O_NO_BOOST},
    {"lazy", no_argument, NULL, O_LAZY},
    {"listen", required_argument, NULL, 'l'},
    {"mirror", no_argument, NULL, O_MIRROR},
    {"no-listen", no_argument, NULL, O_NO_LISTEN},
    {"basis", required_argument, NULL, O_BASIS},
    {"progress-log", required_argument, NULL, O_PROGRESS_LOG},
    {"ctl", required_argument, NULL, O_CTL},
    {"metrics", required_argument, NULL, O_METRICS},
    {"qmp", required_argument, NULL, O_QMP},
    {"drive", required_argument, NULL, O_DRIVE},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    EXPORT_TLS_LONG_OPTIONS,
    {NULL, 0, NULL, 0},
};

/*
 * An option whose value needs checking (arg), or one getopt refused (argv):
 * CMD_PROCEED or the exit code.
 */
static int fetch_option_value(struct fetch_opts *o, int c, const char *arg, char **argv)
{
	switch (c) {
	case O_TIMEOUT:
		if (parse_duration(arg, 1, FETCH_TIMEOUT_MAX, &o->timeout_s) != 0)
			return cli_usage_error(FETCH_WHO, "bad --timeout %s", arg);
		break;
	case O_GIVE_UP:
		if (parse_duration(arg, 1, FETCH_GIVE_UP_MAX, &o->give_up) != 0)
			return cli_usage_error(FETCH_WHO, "bad --give-up %s", arg);
		break;
	default:
		return cli_usage_error(FETCH_WHO, "%s", cli_bad_option(argv));
	}
	return CMD_PROCEED;
}

/* One option c from getopt; CMD_PROCEED or the exit code (--help, a usage error). */
static int fetch_option(struct fetch_opts *o, int c, char **argv)
{
	switch (c) {
	case 'k':
		o->key_path = optarg;
		break;
	case 'e':
		o->export_spec = optarg;
		break;
	case O_NO_BOOST:
		o->no_boost = 1;
		break;
	case O_LAZY:
		o->lazy = 1;
		break;
	case 'l':
		o->listen_spec = optarg;
		break;
	case O_MIRROR:
		o->mirror = 1;
		break;
	case O_NO_LISTEN:
		o->no_listen = 1;
		break;
	case O_BASIS:
		o->basis = optarg;
		break;
	case O_PROGRESS_LOG:
		o->progress_log = optarg;
		break;
	case O_CTL:
		o->ctl_path = optarg;
		break;
	case O_STATE_DIR:
		o->state_dir = optarg;
		break;
	case O_METRICS:
		o->metrics_spec = optarg;
		break;
	case O_QMP:
		o->qmp_path = optarg;
		break;
	case O_DRIVE:
		o->drive = optarg;
		break;
	case O_STATS:
		o->stats_path = optarg;
		break;
	case O_FORCE:
		o->force = 1;
		break;
	case O_NO_PROGRESS:
		o->show_progress = 0;
		break;
	case 'q':
		o->loglvl = LOG_LEVEL_ERROR;
		o->show_progress = 0;
		break;
	case 'v':
		o->loglvl = LOG_LEVEL_DEBUG;
		break;
	case 'h':
		fputs(usage_fetch, stdout);
		return 0;
	case EXPORT_O_TLS:
	case EXPORT_O_TLS_PSK:
	case EXPORT_O_TLS_CREDS:
	case EXPORT_O_TLS_VERIFY_PEER:
		return export_tls_option(&o->tls, c, optarg, FETCH_WHO);
	default:
		return fetch_option_value(o, c, optarg, argv);
	}
	return CMD_PROCEED;
}

/*
 * The URI argument: the URI itself, or @PATH to read it from the first line
 * of PATH (which keeps the secret out of ps). Into buf; 0 or -1 (logged).
 */
static int fetch_uri_arg(const char *arg, char *buf, size_t len)
{
	FILE *f;
	struct stat st;
	size_t n;

	if (arg[0] != '@') {
		if (strlen(arg) >= len) {
			log_error("the URI is longer than %zu bytes", len - 1);
			return -1;
		}
		strcpy(buf, arg);
		return 0;
	}
	f = fopen(arg + 1, "r");
	if (f == NULL) {
		log_error("cannot read the URI from %s: %s", arg + 1, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("%s holds a join secret but others may read it (chmod 600 %s)", arg + 1,
		         arg + 1);
	if (fgets(buf, (int)len, f) == NULL) {
		log_error("%s: no URI in it", arg + 1);
		fclose(f);
		return -1;
	}
	fclose(f);
	n = strcspn(buf, "\r\n");
	if (buf[n] == '\0' && n == len - 1) {
		log_error("%s: the URI is longer than %zu bytes", arg + 1, len - 1);
		return -1;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	return 0;
}

/* A URI without '&' was most likely cut there by the shell: say so. */
static const char *fetch_cut_hint(const char *uri)
{
	return strncmp(uri, URI_SCHEME, strlen(URI_SCHEME)) == 0 && strchr(uri, '&') == NULL
	           ? "; the shell cuts an unquoted URI at '&': quote it, "
	             "p2pvbd fetch 'p2pvbd://…' OUT (or use @FILE)"
	           : "";
}

/* The URI and the options that depend on it or on each other; CMD_PROCEED or the exit code. */
static int fetch_parse_uri(struct fetch_opts *o, const char *arg)
{
	char err[256];
	int rc;

	if (fetch_uri_arg(arg, o->uri_text, URI_MAX_LEN + 1) != 0)
		return 1;
	if (uri_parse(o->uri_text, strlen(o->uri_text), o->u, err, sizeof(err)) != 0)
		return cli_usage_error(FETCH_WHO, "bad volume URI: %s%s", err,
		                       fetch_cut_hint(o->uri_text));
	if (o->lazy && o->export_spec == NULL)
		return cli_usage_error(FETCH_WHO,
		                       "--lazy needs -e (nothing would ever be fetched)");
	if ((o->qmp_path != NULL) != (o->drive != NULL))
		return cli_usage_error(FETCH_WHO, "--qmp and --drive go together (which QEMU, and "
		                                  "which of its drives to move onto OUT)");
	if (o->qmp_path != NULL && o->export_spec == NULL)
		return cli_usage_error(FETCH_WHO, "--qmp needs -e: it moves a VM that runs on "
		                                  "fetch's NBD export onto OUT");
	if (o->qmp_path != NULL && o->mirror)
		return cli_usage_error(
		    FETCH_WHO, "--qmp and --mirror exclude each other: once the VM runs on OUT it "
		               "writes there and its chunks no longer match the volume; mirror "
		               "into another file (fetch --mirror URI OTHER)");
	if (o->qmp_path != NULL && (o->qmp_path[0] == '\0' || o->drive[0] == '\0'))
		return cli_usage_error(FETCH_WHO, "empty --qmp or --drive");
	rc = export_tls_check(&o->tls, o->export_spec, FETCH_WHO);
	if (rc != CMD_PROCEED)
		return rc;
	if (o->listen_spec != NULL && o->no_listen)
		return cli_usage_error(FETCH_WHO, "--listen and --no-listen contradict each other");
	if (o->listen_spec == NULL && !o->no_listen && o->u->ntrackers > 0)
		o->listen_spec = "0.0.0.0:0"; /* peers found through a tracker must reach us */
	if (o->listen_spec != NULL && cli_parse_listen(o->listen_spec, &o->listen_at) != 0)
		return cli_usage_error(FETCH_WHO, "bad --listen %s (HOST:PORT, numeric host)",
		                       o->listen_spec);
	if (o->metrics_spec != NULL && cli_parse_listen(o->metrics_spec, &o->metrics_at) != 0)
		return cli_usage_error(FETCH_WHO, "bad --metrics %s (HOST:PORT, numeric host)",
		                       o->metrics_spec);
	return CMD_PROCEED;
}

/*
 * The command line into o (nothing is made or dialled; only an @FILE URI is
 * read): CMD_PROCEED or the exit code. fetch_opts_free frees o, whatever this
 * returned.
 */
static int fetch_parse(int argc, char **argv, struct fetch_opts *o)
{
	int c, rc;

	memset(o, 0, sizeof(*o));
	o->uri_text = xcalloc(1, URI_MAX_LEN + 1);
	o->u = xcalloc(1, sizeof(*o->u));
	o->timeout_s = PEER_TIMEOUT_DEFAULT;
	o->give_up = FETCH_GIVE_UP_DEFAULT;
	o->show_progress = 1;
	o->loglvl = LOG_LEVEL_INFO;
	while ((c = getopt_long(argc, argv, "k:e:l:qvh", fetch_options, NULL)) != -1)
		if ((rc = fetch_option(o, c, argv)) != CMD_PROCEED)
			return rc;
	if (optind + 2 != argc)
		return cli_usage_error(FETCH_WHO, "fetch needs a URI and an output path%s",
		                       optind + 1 == argc ? fetch_cut_hint(argv[optind]) : "");
	log_init("p2pvbd fetch", o->loglvl);
	if ((rc = fetch_parse_uri(o, argv[optind])) != CMD_PROCEED)
		return rc;
	o->out = argv[optind + 1];
	return CMD_PROCEED;
}

static void fetch_opts_free(struct fetch_opts *o)
{
	vcrypto_wipe(o->u, sizeof(*o->u));
	vcrypto_wipe(o->uri_text, URI_MAX_LEN + 1);
	free(o->uri_text);
	free(o->u);
}

/* ---- before anything is made or dialled -------------------------------- */

/*
 * OUT can be written: not a directory; an existing file or device without
 * our state file only with --force (as store_open will insist), and not in
 * use (image locks, said before any peer is dialled); else its directory is
 * writable.
 */
static int check_output(const char *out, const char *sidecar, int force)
{
	struct imglock *lock = NULL;
	struct stat st;
	char *state;
	int have_state;

	if (stat(out, &st) != 0) {
		if (errno != ENOENT) {
			log_error("output %s: %s", out, strerror(errno));
			return -1;
		}
		return cli_check_writable(out, "output");
	}
	if (S_ISDIR(st.st_mode)) {
		log_error("output %s is a directory; name the image file inside it", out);
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		log_error("output %s is neither a regular file nor a block device", out);
		return -1;
	}
	if (access(out, W_OK) != 0) {
		log_error("output %s: %s", out, strerror(errno));
		return -1;
	}
	state = xasprintf("%s%s", sidecar, STORE_STATE_SUFFIX);
	have_state = access(state, F_OK) == 0;
	free(state);
	if (!have_state && !force && (S_ISBLK(st.st_mode) || st.st_size > 0)) {
		log_error(
		    "output %s exists and is not a p2pvbd output (no state file); use --force "
		    "to overwrite it",
		    out);
		return -1;
	}
	/* In use (a QEMU, another fetch)? Said now, not once the manifest has arrived; the
	 * store takes the lock for good when it opens OUT. */
	if (imglock_acquire(out, -1, IMGLOCK_EXCLUSIVE, &lock) != 0)
		return -1;
	imglock_release(lock);
	return 0;
}

/* Checks before anything is made or dialled (f->sidecar is set); 0 or -1 (logged). */
static int fetch_check(struct fetch *f)
{
	const struct fetch_opts *o = f->o;

	f->sidecar = cli_sidecar(o->out, o->state_dir);
	if (f->sidecar == NULL || check_output(o->out, f->sidecar, o->force) != 0)
		return -1;
	if (o->listen_spec != NULL &&
	    cli_check_bind(o->listen_at.host, o->listen_at.port, "--listen") != 0)
		return -1;
	if (o->metrics_spec != NULL &&
	    cli_check_bind(o->metrics_at.host, o->metrics_at.port, "--metrics") != 0)
		return -1;
	if (o->export_spec != NULL && cli_check_export(o->export_spec) != 0)
		return -1;
	if (o->ctl_path != NULL && cli_check_socket_path(o->ctl_path, "control socket") != 0)
		return -1;
	/* (A --basis that cannot be read is only a warning, later: everything is fetched.) */
	if ((o->stats_path != NULL && cli_check_writable(o->stats_path, "--stats") != 0) ||
	    (o->progress_log != NULL && cli_check_writable(o->progress_log, "--progress-log") != 0))
		return -1;
	for (int i = 0; i < o->u->npeers; i++)
		if (cli_check_resolves(o->u->peer[i].host, "peer in the URI") != 0)
			return -1;
	for (int i = 0; i < o->u->ntrackers; i++)
		if (cli_check_tracker(o->u->tracker[i]) != 0)
			return -1;
	return 0;
}

/*
 * The fetch identity: -k KEY, or one kept with the sidecar files (made once;
 * *made says this run made it, so that a failed start can take it back).
 */
static int fetch_identity(const char *key_path, const char *sidecar, struct vcrypto_identity *id,
                          int *made)
{
	char *path;
	int rc;

	*made = 0;
	if (key_path != NULL)
		return vcrypto_identity_load(key_path, id);
	path = xasprintf("%s%s", sidecar, KEY_SUFFIX);
	if (access(path, F_OK) == 0) {
		rc = vcrypto_identity_load(path, id);
	} else {
		vcrypto_identity_generate(id);
		rc = vcrypto_identity_save(id, path);
		if (rc == 0) {
			*made = 1;
			log_info("made identity %s for receipts", path);
		}
	}
	free(path);
	return rc;
}

/* A fetch that failed before it stored anything leaves no files: the key it made goes. */
static void fetch_forget_identity(const char *sidecar)
{
	char *state = xasprintf("%s%s", sidecar, STORE_STATE_SUFFIX);
	char *key = xasprintf("%s%s", sidecar, KEY_SUFFIX);
	char *pub = xasprintf("%s%s.pub", sidecar, KEY_SUFFIX);

	if (access(state, F_OK) != 0) {
		unlink(key);
		unlink(pub);
	}
	free(state);
	free(key);
	free(pub);
}

/*
 * After --qmp moved the VM onto OUT, OUT is the VM's disk and changes under
 * it: its state file would vouch for chunks the guest rewrites, and a later
 * fetch into OUT would trust them (or overwrite the guest's writes). The
 * state and the kept pages go; a later fetch into OUT needs --force.
 */
static void fetch_forget_state(const char *out, const char *sidecar)
{
	char *state = xasprintf("%s%s", sidecar, STORE_STATE_SUFFIX);
	char *pages = xasprintf("%s.p2pvbd-pages", sidecar);

	if (unlink(state) != 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s; remove it yourself (%s is the VM's disk now)",
		         state, strerror(errno), out);
	else
		log_info("removed %s: %s is the VM's disk now, no longer a p2pvbd output", state,
		         out);
	if (unlink(pages) != 0 && errno != ENOENT)
		log_warn("cannot remove %s: %s", pages, strerror(errno));
	free(state);
	free(pages);
}

/* ---- the swarm and what watches it ------------------------------------- */

static void export_start(void *arg)
{
	struct export_ctx *ex = arg;

	ex->srv = nbd_server_new(ex->base, ex->sw, ex->spec, ex->tls);
	if (ex->srv == NULL) {
		swarm_shutdown(ex->sw);
		return;
	}
	/* On stdout, so that scripts can wait for it. */
	printf("exporting on %s\n", nbd_server_address(ex->srv));
	fflush(stdout);
	log_info("NBD export on %s", nbd_server_address(ex->srv));
}

/* The swarm of the URI's volume into OUT, listening with -l; 0 or -1 (logged). */
static int fetch_swarm(struct fetch *f)
{
	const struct fetch_opts *o = f->o;
	struct swarm_opts so;

	f->base = event_base_new();
	memset(&so, 0, sizeof(so));
	so.role = SWARM_FETCH;
	so.base = f->base;
	so.identity = &f->id;
	memcpy(so.volume_id, o->u->volume_id, sizeof(so.volume_id));
	memcpy(so.source_key, o->u->key, sizeof(so.source_key));
	memcpy(so.join_secret, o->u->secret, sizeof(so.join_secret));
	so.timeout_s = (int)o->timeout_s;
	so.out_path = o->out;
	so.sidecar_path = f->sidecar;
	so.store_flags = STORE_F_CREATE | (o->force ? STORE_F_FORCE : 0);
	so.peers = o->u->peer;
	so.npeers = o->u->npeers;
	so.give_up_s = (int)o->give_up;
	so.no_boost = o->no_boost;
	so.lazy = o->lazy;
	so.basis_path = o->basis;
	for (int i = 0; i < o->u->ntrackers; i++)
		f->trackers[i] = o->u->tracker[i];
	so.trackers = f->trackers;
	so.ntrackers = o->u->ntrackers;
	f->sw = swarm_new(&so);
	if (o->listen_spec != NULL) {
		uint16_t port;

		if (swarm_listen(f->sw, o->listen_at.host, o->listen_at.port, &port) != 0)
			return -1;
		printf("listening on %s:%u\n", o->listen_at.host, port);
		fflush(stdout);
	}
	return 0;
}

/*
 * --qmp: QEMU's drive runs on OUT now. Nothing of fetch may write OUT again:
 * the export closes at once and the run ends.
 */
static void fetch_moved(void *arg)
{
	struct fetch *f = arg;

	f->moved = 1;
	nbd_server_free(f->ex.srv);
	f->ex.srv = NULL;
	swarm_shutdown(f->sw);
}

/*
 * What runs beside the swarm: keeping it running (--mirror, -e), the export
 * once the volume is known, progress, metrics, the control socket, signals.
 * 0 or -1 (logged).
 */
static int fetch_attach(struct fetch *f)
{
	const struct fetch_opts *o = f->o;

	if (o->mirror)
		swarm_keep_running(f->sw);
	if (o->export_spec != NULL) {
		f->ex.base = f->base;
		f->ex.sw = f->sw;
		f->ex.spec = o->export_spec;
		swarm_keep_running(f->sw);
		swarm_set_ready_cb(f->sw, export_start, &f->ex);
	}
	if (o->qmp_path != NULL &&
	    (f->pv = fetch_pivot_new(f->base, f->sw, &f->ex.srv, o->qmp_path, o->drive, o->out,
	                             fetch_moved, f)) == NULL)
		return -1;
	if (o->show_progress)
		f->pr = progress_new(f->base, f->sw);
	if (o->progress_log != NULL &&
	    (f->pl = progress_log_new(f->base, f->sw, o->progress_log)) == NULL)
		return -1;
	return cmd_ctl_server_start(&f->cs, f->base, f->sw, "fetch", o->ctl_path,
	                            o->metrics_spec ? &o->metrics_at : NULL);
}

/* ---- at exit ----------------------------------------------------------- */

static int write_stats(const char *path, const struct swarm_stats *st, double secs)
{
	char buf[1024];

	snprintf(buf, sizeof(buf),
	         "{\"chunks_total\":%llu,\"chunks_zero\":%llu,\"chunks_resumed\":%llu,"
	         "\"chunks_basis\":%llu,\"chunks_fetched\":%llu,\"bytes_fetched\":%llu,\"bad_"
	         "pieces\":%llu,"
	         "\"bytes_from_peers\":%llu,\"bytes_discarded\":%llu,\"source_offloads\":%llu,"
	         "\"deltas\":%llu,\"deltas_refused\":%llu,\"chunks_changed\":%llu,"
	         "\"receipt_acked\":%s,"
	         "\"seconds\":%.3f}\n",
	         (unsigned long long)st->chunks_total, (unsigned long long)st->chunks_zero,
	         (unsigned long long)st->chunks_resumed, (unsigned long long)st->chunks_basis,
	         (unsigned long long)st->chunks_fetched, (unsigned long long)st->bytes_fetched,
	         (unsigned long long)st->bad_pieces, (unsigned long long)st->bytes_from_peers,
	         (unsigned long long)st->bytes_discarded, (unsigned long long)st->source_offloads,
	         (unsigned long long)st->deltas, (unsigned long long)st->deltas_refused,
	         (unsigned long long)st->chunks_changed, st->receipt_acked ? "true" : "false",
	         secs);
	return cli_write_file_atomic(path, buf);
}

/* The summary line (rc: the fetch's result so far) and --stats; the exit code. */
static int fetch_summary(const struct fetch *f, int rc)
{
	const struct swarm_stats *st = swarm_stats(f->sw);
	double secs = (double)(now_ns() - f->t0) / 1e9;
	char b[16];

	if (rc == 0)
		log_info("done in %.1f s: fetched %s in %llu chunks (%llu resumed, %llu from "
		         "the basis, %llu zero)",
		         secs, fmt_bytes(st->bytes_fetched, b, sizeof(b)),
		         (unsigned long long)st->chunks_fetched,
		         (unsigned long long)st->chunks_resumed,
		         (unsigned long long)st->chunks_basis, (unsigned long long)st->chunks_zero);
	if (f->o->stats_path != NULL && write_stats(f->o->stats_path, st, secs) != 0)
		rc = 1;
	return rc;
}

/* ---- the whole run ----------------------------------------------------- */

/* Join the swarm and fetch until it stops; the exit code. */
static int fetch_run(struct fetch *f)
{
	const struct fetch_opts *o = f->o;
	int rc;

	if (fetch_check(f) != 0 || export_tls_load(&o->tls, &f->ex.tls) != 0 ||
	    fetch_identity(o->key_path, f->sidecar, &f->id, &f->made_key) != 0)
		return 1;
	if (fetch_swarm(f) != 0 || fetch_attach(f) != 0)
		return 1;
	swarm_start(f->sw);
	/* Under systemd (Type=notify): listening, and joining the swarm. */
	sd_notifyf(0, "READY=1\nSTATUS=fetching into %s", o->out);
	event_base_dispatch(f->base);
	/* A move onto OUT under way (stopped by a signal meanwhile) ends first: QEMU drains the
	 * guest's I/O through the export, which only this loop serves. Bounded by QMP timeouts. */
	while (fetch_pivot_busy(f->pv))
		event_base_loop(f->base, EVLOOP_ONCE);
	sd_notify(0, "STOPPING=1");
	progress_final(f->pr);
	progress_log_final(f->pl);
	rc = swarm_result(f->sw) == 0 ? 0 : 1;
	return fetch_summary(f, rc);
}

/* Release everything f holds; rc is the exit code (a failed run takes back the key it made). */
static void fetch_free(struct fetch *f, int rc)
{
	fetch_pivot_free(f->pv);
	nbd_server_free(f->ex.srv);
	nbd_tls_creds_free(f->ex.tls);
	cmd_ctl_server_stop(&f->cs);
	progress_log_free(f->pl);
	progress_free(f->pr);
	swarm_free(f->sw);
	if (f->base)
		event_base_free(f->base);
	if (rc != 0 && f->made_key)
		fetch_forget_identity(f->sidecar);
	if (f->moved)
		fetch_forget_state(f->o->out, f->sidecar);
	free(f->sidecar);
	vcrypto_identity_wipe(&f->id);
}

static int cmd_fetch(int argc, char **argv)
{
	struct fetch_opts o;
	struct fetch f;
	int rc;

	memset(&f, 0, sizeof(f));
	f.t0 = now_ns();
	rc = fetch_parse(argc, argv, &o);
	if (rc == CMD_PROCEED) {
		f.o = &o;
		rc = fetch_run(&f);
		fetch_free(&f, rc);
	}
	fetch_opts_free(&o);
	return rc;
}

const struct cmd_entry cmd_fetch_entry = {
    .name = "fetch",
    .args = "[OPTIONS] URI OUT",
    .summary = "fetch and verify the volume into OUT",
    .usage = usage_fetch,
    .exec = cmd_fetch,
};
