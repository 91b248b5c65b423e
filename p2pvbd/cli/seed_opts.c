/* SPDX-License-Identifier: ISC */
/*
 * seed_opts: the command line of `p2pvbd seed`, its --help text, and its
 * parsing into struct seed_opts (seed_int.h): syntax and the rules that tie
 * options together only; nothing is opened here (cmd_seed.c acts on it).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "imgsrc.h"
#include "manifest.h"
#include "parse.h"
#include "peer.h"
#include "seed_int.h"
#include "uri.h"
#include "util.h"
#include "vmattach.h"

const char usage_seed[] =
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
int seed_parse(int argc, char **argv, struct seed_opts *o)
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
