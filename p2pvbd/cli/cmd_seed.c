/* SPDX-License-Identifier: ISC */
/*
 * cmd_seed: `p2pvbd seed`, on the source host. Hashes the image into chunks,
 * signs the manifest, prints the volume URI and serves the chunks until
 * stopped (or until enough receipts arrived); with -e it also exports the
 * image over NBD to the VM running at the source (live migration); with
 * --qmp it attaches to a VM that runs on its own disk (seed_qmp.c). The
 * structs both files share are in seed_int.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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
#include "parse.h"
#include "peer.h"
#include "scan.h"
#include "seed_int.h"
#include "sockpath.h"
#include "swarm.h"
#include "seedgen.h"
#include "uri.h"
#include "util.h"
#include "vcrypto.h"
#include "vmattach.h"

static const char usage_seed[] =
    "usage: p2pvbd seed -k KEY [OPTIONS] IMAGE\n"
    "       p2pvbd seed -k KEY --qmp SOCKET --drive DRIVE [OPTIONS]\n"
    "\n"
    "Hash IMAGE into chunks (with every core), sign the manifest with KEY, print the\n"
    "volume URI on stdout and serve the chunks to destinations until stopped\n"
    "(SIGINT/SIGTERM) or until enough receipts arrived.\n"
    "\n"
    "With --qmp there is no IMAGE: the seed attaches to the running QEMU whose QMP\n"
    "socket is SOCKET and seeds DRIVE as the guest sees it (any image format), with\n"
    "no restart: QEMU mirrors the drive into a scratch copy the seed keeps in\n"
    "--state-dir (blockdev-mirror, write-blocking: from then on every guest write\n"
    "completes only once the seed has it). The URI is printed once the copy is\n"
    "done. When the seed stops it detaches: the job and its node are removed and\n"
    "the VM runs on as it was. The live options below apply as with -e.\n"
    "\n"
    "  -k, --key PATH               source secret key (from p2pvbd keygen; required)\n"
    "  -l, --listen HOST:PORT       address to listen on (default 0.0.0.0:7001;\n"
    "                               port 0 picks a free port)\n"
    "      --advertise HOST:PORT    address put into the URI (repeatable; default: the\n"
    "                               listen address, or this host's name if wildcard)\n"
    "  -t, --tracker URL            announce to this tracker (http://HOST:PORT/announce;\n"
    "                               repeatable) and name it in the URI, so that\n"
    "                               destinations find each other through it\n"
    "      --uri-file PATH          also write the URI to PATH once ready to serve\n"
    "      --ctl PATH               control socket (default $XDG_RUNTIME_DIR or /tmp,\n"
    "                               p2pvbd-seed-PID.ctl; logged at start): p2pvbd status\n"
    "      --metrics HOST:PORT      serve Prometheus metrics at http://HOST:PORT/metrics\n"
    "                               (port 0 picks one; logged)\n"
    "  -e, --export ADDR            also export IMAGE over NBD (unix:PATH or HOST:PORT)\n"
    "                               for the VM running at the source (live migration):\n"
    "                               its writes go to IMAGE, the chunks they touch are\n"
    "                               hashed again and published as signed deltas (new\n"
    "                               generations) every 100 ms; destinations answer their\n"
    "                               VM only once 'p2pvbd ctl CTL freeze' made one final\n"
    "      --qmp SOCKET             the QMP socket of the source QEMU (QEMU option\n"
    "                               -qmp unix:SOCKET,server=on,wait=off; a socket of\n"
    "                               its own: QEMU takes one client per QMP socket):\n"
    "                               with --drive, attach to its running VM; with -e\n"
    "                               (a VM booted on the export), only for 'p2pvbd ctl\n"
    "                               CTL migrate URI', which runs the switchover\n"
    "      --drive DRIVE            with --qmp: the drive to seed: its -drive id, the\n"
    "                               id of its -device, or its top node name\n"
    "      --tls-psk FILE           with -e: require TLS with pre-shared keys; FILE has\n"
    "                               USERNAME:HEXKEY lines (psktool -u NAME -p FILE)\n"
    "      --tls-creds DIR          with -e: require TLS with X.509 certificates:\n"
    "                               DIR/server-cert.pem and server-key.pem, as QEMU's\n"
    "                               tls-creds-x509 endpoint=server lays them out\n"
    "      --tls-verify-peer        with --tls-creds: clients need a certificate signed\n"
    "                               by DIR/ca-cert.pem\n"
    "      --tls MODE               off or require (implied by --tls-psk, --tls-creds);\n"
    "                               -e HOST:PORT needs TLS or --tls=off (plaintext:\n"
    "                               anyone who reaches the port can write the disk)\n"
    "      --freeze-on-disconnect   with -e: freeze when the last NBD client leaves (the\n"
    "                               hypervisor finished migrating the VM)\n"
    "      --max-dirty-rate RATE    with -e: cap the VM's write rate (e.g. 20M), so that\n"
    "                               the migration converges when it writes faster than\n"
    "                               the swarm carries\n"
    "      --write-through          with -e: acknowledge each VM write only once a\n"
    "                               destination holds it (slower writes; the copy can\n"
    "                               never fall behind)\n"
    "      --downtime-target MS     with -e: the switchover cost to aim at, in ms (default\n"
    "                               300): when the copy does not converge towards it,\n"
    "                               the VM's writes are capped, lower and lower, until it\n"
    "                               does (auto-converge; logged, and in p2pvbd status)\n"
    "      --no-auto-converge       with -e: never cap the VM's writes by itself\n"

    "      --chunk-size SIZE        chunk size, power of two, 64K..4M (default 256K)\n"
    "      --exit-after-receipts N  exit 0 once N distinct destinations sent valid receipts\n"
    "                               (directly, or through a tracker of the URI); a receipt\n"
    "                               counts only if it proves the volume's join secret\n"
    "      --receipt-from KEY       count receipts only from this destination (repeatable):\n"
    "                               its public key as 64 hex digits (as p2pvbd keygen\n"
    "                               prints it) or its PATH.pub file; others are logged\n"
    "      --rate-limit RATE        cap the upload rate; default unlimited\n"
    "      --volume-id HEX          reuse a volume id (32 hex digits), e.g. after a restart:\n"
    "                               the seed goes on above every generation it published\n"
    "                               (kept in IMAGE.p2pvbd-seed) and hashes IMAGE again\n"
    "      --state-dir DIR          keep IMAGE.p2pvbd-seed in DIR (default: beside IMAGE;\n"
    "                               " CLI_BLOCKDEV_STATE_DIR " for a block device); with\n"
    "                               --qmp also the scratch copy and its NBD socket\n"
    "                               (p2pvbd-TAG.raw, .nbd; default " CLI_BLOCKDEV_STATE_DIR ")\n"
    "      --secret HEX             reuse a join secret (64 hex digits)\n"
    "      --threads N              hashing threads (default: one per core)\n"
    "      --timeout SECS           drop a peer silent this long (default 30), and one\n"
    "                               not authenticated within it (10 s at most)\n"
    "      --hash-only              hash the image, print timing as JSON, exit\n"
    "  -q, --quiet                  only errors on stderr\n"
    "  -v, --verbose                debug log\n"
    "  -h, --help                   this text\n"
    "\n"
    "IMAGE is a file, a block device, or an NBD URI read with libnbd, so that any\n"
    "format qemu-nbd or nbdkit serves is seeded as it is: nbd+unix:///?socket=PATH,\n"
    "nbd+unix:///EXPORT?socket=PATH, nbd://HOST[:PORT][/EXPORT]. Chunks its block\n"
    "status says read as zeros are never read. Not with -e. Its generation record is\n"
    "DIR/nbd-HASH.p2pvbd-seed (HASH: of the URI as written; DIR: --state-dir, else\n"
    "" CLI_BLOCKDEV_STATE_DIR ").\n"
    "\n"
    "Sizes: bytes with an optional K, M, G or T (1024-based; 4M = 4MiB). Rates: a\n"
    "size per second (100M = 100 MiB/s) or bits, decimal: 100Mbit, 1Gbit. Durations:\n"
    "seconds, or 30s, 5m, 2h. SIGINT, SIGTERM and SIGHUP stop it cleanly.\n";

/* Usage errors name the command so. */
#define SEED_WHO "p2pvbd seed"
/* Option bounds: --exit-after-receipts, --threads, --timeout (seconds). */
#define SEED_RECEIPTS_MAX 1000000
#define SEED_THREADS_MAX  64
#define SEED_TIMEOUT_MAX  3600
/* --downtime-target bound, ms: a minute is already no live migration. */
#define SEED_DOWNTIME_MAX_MS 60000u

/* ---- the command line -------------------------------------------------- */

enum {
	O_URI_FILE = 256,
	O_CHUNK,
	O_RECEIPTS,
	O_RATE,
	O_VOLID,
	O_STATE_DIR,
	O_SECRET,
	O_THREADS,
	O_TIMEOUT,
	O_HASH_ONLY,
	O_ADVERTISE,
	O_CTL,
	O_FREEZE_DISC,
	O_MAX_DIRTY,
	O_WRITE_THROUGH,
	O_DOWNTIME,
	O_NO_AUTO_CONVERGE,
	O_METRICS,
	O_RECEIPT_FROM,
	O_QMP,
	O_DRIVE
};

static const struct option seed_options[] = {
    {"key", required_argument, NULL, 'k'},
    {"listen", required_argument, NULL, 'l'},
    {"advertise", required_argument, NULL, O_ADVERTISE},
    {"tracker", required_argument, NULL, 't'},
    {"export", required_argument, NULL, 'e'},
    {"qmp", required_argument, NULL, O_QMP},
    {"drive", required_argument, NULL, O_DRIVE},
    {"ctl", required_argument, NULL, O_CTL},
    {"freeze-on-disconnect", no_argument, NULL, O_FREEZE_DISC},
    {"max-dirty-rate", required_argument, NULL, O_MAX_DIRTY},
    {"write-through", no_argument, NULL, O_WRITE_THROUGH},
    {"downtime-target", required_argument, NULL, O_DOWNTIME},
    {"no-auto-converge", no_argument, NULL, O_NO_AUTO_CONVERGE},
    {"metrics", required_argument, NULL, O_METRICS},
    {"uri-file", required_argument, NULL, O_URI_FILE},
    {"chunk-size", required_argument, NULL, O_CHUNK},
    {"exit-after-receipts", required_argument, NULL, O_RECEIPTS},
    {"receipt-from", required_argument, NULL, O_RECEIPT_FROM},
    {"rate-limit", required_argument, NULL, O_RATE},
    {"volume-id", required_argument, NULL, O_VOLID},
    {"state-dir", required_argument, NULL, O_STATE_DIR},
    {"secret", required_argument, NULL, O_SECRET},
    {"threads", required_argument, NULL, O_THREADS},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"hash-only", no_argument, NULL, O_HASH_ONLY},
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
static int seed_option_value(struct seed_opts *o, int c, const char *arg, char **argv)
{
	switch (c) {
	case O_MAX_DIRTY:
		if (parse_rate(arg, &o->max_dirty) != 0)
			return cli_usage_error(SEED_WHO, "bad --max-dirty-rate %s", arg);
		break;
	case O_DOWNTIME:
		if (parse_uint(arg, 1, SEED_DOWNTIME_MAX_MS, &o->downtime_ms) != 0)
			return cli_usage_error(SEED_WHO,
			                       "bad --downtime-target %s (milliseconds, 1..%u)",
			                       arg, SEED_DOWNTIME_MAX_MS);
		break;
	case 't':
		if (o->ntrackers == URI_MAX_PEERS)
			return cli_usage_error(SEED_WHO, "at most %d trackers", URI_MAX_PEERS);
		if (strncmp(arg, "http://", 7) != 0 || strlen(arg) >= 512)
			return cli_usage_error(SEED_WHO,
			                       "bad --tracker %s (http://HOST:PORT/announce)", arg);
		o->trackers[o->ntrackers++] = arg;
		break;
	case O_ADVERTISE:
		if (o->nadvertise == URI_MAX_PEERS ||
		    uri_parse_hostport(arg, strlen(arg), &o->advertise[o->nadvertise]) != 0)
			return cli_usage_error(SEED_WHO, "bad --advertise %s", arg);
		o->nadvertise++;
		break;
	case O_CHUNK:
		if (parse_size(arg, &o->chunk_size) != 0 || o->chunk_size > UINT32_MAX ||
		    !manifest_chunk_size_valid((uint32_t)o->chunk_size))
			return cli_usage_error(SEED_WHO,
			                       "--chunk-size must be a power of two from 64K "
			                       "to 4M, not %s",
			                       arg);
		break;
	case O_RECEIPTS:
		if (parse_uint(arg, 1, SEED_RECEIPTS_MAX, &o->receipts) != 0)
			return cli_usage_error(SEED_WHO, "bad --exit-after-receipts %s", arg);
		break;
	case O_RECEIPT_FROM:
		if (o->nreceipt_from == SEED_RECEIPT_FROM_MAX)
			return cli_usage_error(SEED_WHO, "at most %d --receipt-from",
			                       SEED_RECEIPT_FROM_MAX);
		if (*arg == '\0')
			return cli_usage_error(SEED_WHO, "--receipt-from needs a public key (64 "
			                                 "hex digits) or a PATH.pub file");
		o->receipt_from[o->nreceipt_from++] = arg;
		break;
	case O_RATE:
		if (parse_rate(arg, &o->rate) != 0)
			return cli_usage_error(SEED_WHO, "bad --rate-limit %s", arg);
		break;
	case O_VOLID:
		if (hex_decode(arg, strlen(arg), o->volume_id, sizeof(o->volume_id)) != 0)
			return cli_usage_error(SEED_WHO, "--volume-id needs 32 hex digits");
		o->have_volid = 1;
		break;
	case O_SECRET:
		if (hex_decode(arg, strlen(arg), o->secret, sizeof(o->secret)) != 0)
			return cli_usage_error(SEED_WHO, "--secret needs 64 hex digits");
		o->have_secret = 1;
		break;
	case O_THREADS:
		if (parse_uint(arg, 1, SEED_THREADS_MAX, &o->threads) != 0)
			return cli_usage_error(SEED_WHO, "bad --threads %s", arg);
		break;
	case O_TIMEOUT:
		if (parse_duration(arg, 1, SEED_TIMEOUT_MAX, &o->timeout_s) != 0)
			return cli_usage_error(SEED_WHO, "bad --timeout %s", arg);
		break;
	default:
		return cli_usage_error(SEED_WHO, "%s", cli_bad_option(argv));
	}
	return CMD_PROCEED;
}

/* One option c from getopt; CMD_PROCEED or the exit code (--help, a usage error). */
static int seed_option(struct seed_opts *o, int c, char **argv)
{
	switch (c) {
	case 'k':
		o->key_path = optarg;
		break;
	case 'e':
		o->export_spec = optarg;
		break;
	case O_CTL:
		o->ctl_path = optarg;
		break;
	case O_QMP:
		o->qmp_path = optarg;
		break;
	case O_DRIVE:
		o->drive = optarg;
		break;
	case O_STATE_DIR:
		o->state_dir = optarg;
		break;
	case O_FREEZE_DISC:
		o->freeze_on_disc = 1;
		break;
	case O_WRITE_THROUGH:
		o->write_through = 1;
		break;
	case O_NO_AUTO_CONVERGE:
		o->no_auto_converge = 1;
		break;
	case O_METRICS:
		o->metrics_spec = optarg;
		break;
	case 'l':
		o->listen_spec = optarg;
		break;
	case O_URI_FILE:
		o->uri_file = optarg;
		break;
	case O_HASH_ONLY:
		o->hash_only = 1;
		break;
	case 'q':
		o->loglvl = LOG_LEVEL_ERROR;
		break;
	case 'v':
		o->loglvl = LOG_LEVEL_DEBUG;
		break;
	case 'h':
		fputs(usage_seed, stdout);
		return 0;
	case EXPORT_O_TLS:
	case EXPORT_O_TLS_PSK:
	case EXPORT_O_TLS_CREDS:
	case EXPORT_O_TLS_VERIFY_PEER:
		return export_tls_option(&o->tls, c, optarg, SEED_WHO);
	default:
		return seed_option_value(o, c, optarg, argv);
	}
	return CMD_PROCEED;
}

/*
 * --qmp and --drive: checked, and the scratch copy and export named (in
 * --state-dir, default CLI_BLOCKDEV_STATE_DIR, made absolute: QEMU opens
 * the socket). CMD_PROCEED or the exit code.
 */
static int seed_parse_qmp(struct seed_opts *o, int argc)
{
	const char *dir = o->state_dir ? o->state_dir : CLI_BLOCKDEV_STATE_DIR;
	char cwd[4096];

	if (o->qmp_path == NULL || o->drive == NULL || *o->qmp_path == '\0' || *o->drive == '\0')
		return cli_usage_error(SEED_WHO, "--qmp SOCKET needs --drive DRIVE (attach to the "
		                                 "running VM) or -e (a VM booted on the export)");
	if (optind != argc)
		return cli_usage_error(SEED_WHO, "--qmp takes no IMAGE: the seed keeps a copy of "
		                                 "the drive in --state-dir");
	if (o->export_spec != NULL)
		return cli_usage_error(SEED_WHO, "--drive and -e exclude each other (with --qmp "
		                                 "--drive the seed exports to QEMU itself, on a "
		                                 "socket in --state-dir)");
	if (o->tls.mode != NBD_TLS_UNSET || o->tls.psk_file || o->tls.creds_dir ||
	    o->tls.verify_peer)
		return cli_usage_error(SEED_WHO,
		                       "--tls options are for -e, not --qmp (QEMU reaches "
		                       "the seed on a local unix socket)");
	if (o->write_through)
		return cli_usage_error(SEED_WHO,
		                       "--write-through does not go with --qmp: QEMU's bulk copy "
		                       "would wait for destinations, which join only after it; "
		                       "use --max-dirty-rate or auto-converge");
	if (o->hash_only)
		return cli_usage_error(SEED_WHO, "--hash-only needs an IMAGE, not --qmp");
	if (*dir != '/') {
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			return cli_usage_error(SEED_WHO, "cannot get the current directory");
	} else
		cwd[0] = '\0';
	vmattach_tag(o->qmp_path, o->drive, o->qmp_tag);
	o->qmp_image = xasprintf("%s%s%s/p2pvbd-%s.raw", cwd, *cwd ? "/" : "", dir, o->qmp_tag);
	o->qmp_export =
	    xasprintf("unix:%s%s%s/p2pvbd-%s.nbd", cwd, *cwd ? "/" : "", dir, o->qmp_tag);
	o->image = o->qmp_image;
	o->export_spec = o->qmp_export;
	return CMD_PROCEED;
}

/* The command line into o (syntax only; nothing is opened): CMD_PROCEED or the exit code. */
static int seed_parse(int argc, char **argv, struct seed_opts *o)
{
	int c, rc;

	memset(o, 0, sizeof(*o));
	o->listen_spec = "0.0.0.0:7001";
	o->loglvl = LOG_LEVEL_INFO;
	o->timeout_s = PEER_TIMEOUT_DEFAULT;
	o->chunk_size = MANIFEST_CHUNK_DEFAULT;
	while ((c = getopt_long(argc, argv, "k:l:t:e:qvh", seed_options, NULL)) != -1)
		if ((rc = seed_option(o, c, argv)) != CMD_PROCEED)
			return rc;
	if (o->drive != NULL || (o->qmp_path != NULL && o->export_spec == NULL)) {
		if ((rc = seed_parse_qmp(o, argc)) != CMD_PROCEED)
			return rc;
	} else if (optind + 1 != argc)
		return cli_usage_error(SEED_WHO, "seed needs exactly one IMAGE");
	else
		o->image = argv[optind];
	if (o->export_spec != NULL && imgsrc_is_nbd_uri(o->image))
		return cli_usage_error(SEED_WHO,
		                       "-e needs IMAGE to be a file or block device (the VM's "
		                       "writes go into it); an NBD source (%s) is only read",
		                       o->image);
	if (o->key_path == NULL)
		return cli_usage_error(SEED_WHO, "seed needs -k KEY (make one with p2pvbd keygen)");
	if ((o->freeze_on_disc || o->max_dirty || o->write_through || o->downtime_ms ||
	     o->no_auto_converge) &&
	    o->export_spec == NULL)
		return cli_usage_error(SEED_WHO, "--freeze-on-disconnect, --max-dirty-rate, "
		                                 "--write-through, --downtime-target and "
		                                 "--no-auto-converge need -e (a VM)");
	if (o->qmp_path != NULL && o->export_spec == NULL)
		return cli_usage_error(SEED_WHO, "--qmp needs -e (the VM's disk on this seed)");
	if (o->qmp_path != NULL && (o->qmp_path[0] == '\0' || strlen(o->qmp_path) >= 108))
		return cli_usage_error(SEED_WHO, "bad --qmp %s (a Unix socket's path)",
		                       o->qmp_path);
	if (o->nreceipt_from > 0 && o->receipts > (uint64_t)o->nreceipt_from)
		return cli_usage_error(SEED_WHO,
		                       "--exit-after-receipts %llu can never be reached with %d "
		                       "--receipt-from destinations",
		                       (unsigned long long)o->receipts, o->nreceipt_from);
	if ((rc = export_tls_check(&o->tls, o->export_spec, SEED_WHO)) != CMD_PROCEED)
		return rc;
	if (cli_parse_listen(o->listen_spec, &o->listen_at) != 0)
		return cli_usage_error(SEED_WHO, "bad --listen %s (HOST:PORT, numeric host)",
		                       o->listen_spec);
	if (o->metrics_spec != NULL && cli_parse_listen(o->metrics_spec, &o->metrics_at) != 0)
		return cli_usage_error(SEED_WHO, "bad --metrics %s (HOST:PORT, numeric host)",
		                       o->metrics_spec);
	return CMD_PROCEED;
}

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
