/*
 * main: the p2pvbd command line (keygen, seed, fetch), progress display and
 * exit codes. The work itself is in swarm, store, scan and manifest.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <linux/fs.h>
#include <systemd/sd-daemon.h>

#include "manifest.h"
#include "ctl.h"
#include "imglock.h"
#include "metrics.h"
#include "nbd.h"
#include "parse.h"
#include "peer.h"
#include "scan.h"
#include "sockpath.h"
#include "store.h"
#include "swarm.h"
#include "uri.h"
#include "util.h"
#include "vcrypto.h"
#include "version.h"

#define EXIT_USAGE 2

/* Seconds a fetch waits without any progress before it gives up. */
#define FETCH_GIVE_UP_DEFAULT 300
#define KEY_SUFFIX            ".p2pvbd-key"
/* Sidecar files of a block-device OUT, unless --state-dir says otherwise (never /dev). */
#define FETCH_BLOCKDEV_STATE_DIR "/var/lib/p2pvbd"
/* Signals that shut down cleanly: SIGINT, SIGTERM, SIGHUP. */
#define NSIGNALS 3
/* The progress bar's width in columns: at most (more says nothing more), at least (or none). */
#define PROGRESS_BAR_MAX 30
#define PROGRESS_BAR_MIN 10

static const char usage_main[] =
    "usage: p2pvbd COMMAND [OPTIONS] ...\n"
    "\n"
    "Live migration of virtual machine disks, peer to peer.\n"
    "\n"
    "commands:\n"
    "  keygen -o PATH          make an Ed25519 identity (PATH and PATH.pub)\n"
    "  seed [OPTIONS] IMAGE    hash IMAGE, sign its manifest, serve it; prints the volume URI\n"
    "  fetch [OPTIONS] URI OUT fetch and verify the volume into OUT\n"
    "  status [--json] CTL     what a running seed or fetch is doing (its --ctl socket)\n"
    "  ctl CTL COMMAND         tell a running seed: freeze (switchover), thaw (roll back)\n"
    "\n"
    "Run 'p2pvbd COMMAND --help' for a command's options.\n"
    "Exit codes: 0 success, 1 failure, 2 usage error.\n";

static const char usage_keygen[] =
    "usage: p2pvbd keygen -o PATH\n"
    "\n"
    "Make an Ed25519 key pair: PATH holds the secret key (mode 0600), PATH.pub the\n"
    "public key. Refuses to overwrite an existing file.\n"
    "\n"
    "  -o, --output PATH   where to write the secret key (required)\n"
    "  -h, --help          this text\n";

static const char usage_seed[] =
    "usage: p2pvbd seed -k KEY [OPTIONS] IMAGE\n"
    "\n"
    "Hash IMAGE into chunks (with every core), sign the manifest with KEY, print the\n"
    "volume URI on stdout and serve the chunks to destinations until stopped\n"
    "(SIGINT/SIGTERM) or until enough receipts arrived.\n"
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
    "      --freeze-on-disconnect   with -e: freeze when the last NBD client leaves (the\n"
    "                               hypervisor finished migrating the VM)\n"
    "      --max-dirty-rate RATE    with -e: cap the VM's write rate (e.g. 20M), so that\n"
    "                               the migration converges when it writes faster than\n"
    "                               the swarm carries\n"
    "      --write-through          with -e: acknowledge each VM write only once a\n"
    "                               destination holds it (slower writes; the copy can\n"
    "                               never fall behind)\n"
    "      --chunk-size SIZE        chunk size, power of two, 64K..4M (default 256K)\n"
    "      --exit-after-receipts N  exit 0 once N distinct destinations sent valid receipts\n"
    "                               (directly, or through a tracker of the URI)\n"
    "      --rate-limit RATE        cap the upload rate; default unlimited\n"
    "      --volume-id HEX          reuse a volume id (32 hex digits), e.g. after a restart\n"
    "      --secret HEX             reuse a join secret (64 hex digits)\n"
    "      --threads N              hashing threads (default: one per core)\n"
    "      --timeout SECS           drop a peer silent this long (default 30)\n"
    "      --hash-only              hash the image, print timing as JSON, exit\n"
    "  -q, --quiet                  only errors on stderr\n"
    "  -v, --verbose                debug log\n"
    "  -h, --help                   this text\n"
    "\n"
    "Sizes: bytes with an optional K, M, G or T (1024-based; 4M = 4MiB). Rates: a\n"
    "size per second (100M = 100 MiB/s) or bits, decimal: 100Mbit, 1Gbit. Durations:\n"
    "seconds, or 30s, 5m, 2h. SIGINT, SIGTERM and SIGHUP stop it cleanly.\n";

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
    "  -l, --listen ADDR    also serve verified chunks to other destinations on\n"
    "                       HOST:PORT (port 0 picks one; printed as 'listening on').\n"
    "                       Default with a tracker in the URI: 0.0.0.0:0\n"
    "      --no-listen      do not accept peers, even with a tracker in the URI\n"
    "      --basis FILE     an older copy of the image: chunks whose hash matches are\n"
    "                       copied from it instead of fetched (only changes travel)\n"
    "      --mirror         keep serving after completion (until SIGINT/SIGTERM)\n"
    "      --no-boost       no priority for the VM's reads (benchmark control)\n"
    "      --lazy           with -e: fetch only the chunks the VM touches (pure\n"
    "                       postcopy; the image completes only if all is read)\n"
    "  -k, --key PATH       identity that signs the receipt (default: OUT.p2pvbd-key,\n"
    "                       made on first use)\n"
    "      --state-dir DIR  keep the sidecar files (OUT.p2pvbd-state, -key, -pages)\n"
    "                       in DIR, named after OUT's file name; default: beside OUT,\n"
    "                       or " FETCH_BLOCKDEV_STATE_DIR " for a block device\n"
    "      --stats PATH     write counters as JSON to PATH at exit\n"
    "      --ctl PATH       control socket (default $XDG_RUNTIME_DIR or /tmp,\n"
    "                       p2pvbd-fetch-PID.ctl; logged at start): p2pvbd status\n"
    "      --metrics HOST:PORT  serve Prometheus metrics at http://HOST:PORT/metrics\n"
    "                       (port 0 picks one; logged)\n"
    "      --progress-log PATH  append \"UNIX-TIME BYTES-DONE BYTES-TOTAL\" lines to PATH\n"
    "                       every 0.2 s (for plots)\n"
    "      --timeout SECS   drop a peer silent this long (default 30; also 30s, 2m)\n"
    "      --give-up SECS   fail after this long without progress (default 300)\n"
    "      --force          overwrite an existing OUT that has no state file\n"
    "      --no-progress    no progress display\n"
    "  -q, --quiet          only errors on stderr, no progress\n"
    "  -v, --verbose        debug log\n"
    "  -h, --help           this text\n"
    "\n"
    "SIGINT, SIGTERM and SIGHUP stop it cleanly (flushed; run again to resume).\n";

/*
 * A usage error: one line saying what is wrong, one pointing at the help
 * (the whole help text would bury the message). cmd is NULL for p2pvbd itself.
 */
static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "p2pvbd%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nsee 'p2pvbd %s%s--help'\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

/* "HOST:PORT" or "[V6]:PORT" to listen on; unlike a URI peer, port 0 is allowed. */
static int parse_listen(const char *spec, struct uri_peer *p)
{
	return parse_hostport(spec, 1, p->host, sizeof(p->host), &p->port);
}

/* What getopt refused (its own message is off: opterr = 0), for usage_error. */
static const char *bad_option(char **argv)
{
	static char msg[160];

	if (optopt != 0 && optind > 0 && argv[optind - 1][0] == '-' && argv[optind - 1][1] != '-')
		snprintf(msg, sizeof(msg), "option -%c is unknown or needs a value", optopt);
	else
		snprintf(msg, sizeof(msg), "option %.100s is unknown or needs a value",
		         argv[optind - 1]);
	return msg;
}

/* ---- checks before work ----------------------------------------------- */

/*
 * Everything cheap is checked before an image is hashed or a peer dialled,
 * so that a mistake costs a second, not the minutes of a hash: addresses
 * that cannot be bound, names that do not resolve, outputs and files that
 * cannot be written. Each logs the reason and returns -1.
 */

/* host:port can be bound now (the listener itself comes after hashing or joining). */
static int check_bind(const char *host, uint16_t port, const char *what)
{
	struct addrinfo hints, *ai = NULL;
	char service[8];
	int fd = -1, rc, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(service, sizeof(service), "%u", port);
	rc = getaddrinfo(host, service, &hints, &ai);
	if (rc != 0) {
		log_error("%s %s:%u: %s", what, host, port,
		          rc == EAI_NONAME ? "the host must be a numeric address"
		                           : gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	rc = fd < 0 ? -1 : bind(fd, ai->ai_addr, ai->ai_addrlen);
	if (rc != 0)
		log_error("%s %s:%u: cannot listen there: %s", what, host, port, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return rc == 0 ? 0 : -1;
}

/* -e ADDR: a Unix socket path we may take, or a TCP address we can bind. */
static int check_export(const char *spec)
{
	char host[256];
	uint16_t port;

	if (strncmp(spec, "unix:", 5) == 0)
		return spec[5] == '\0' ? -1 : sockpath_claim(spec + 5, "export");
	if (parse_hostport(spec, 1, host, sizeof(host), &port) != 0) {
		log_error("export %s: expected unix:PATH or HOST:PORT", spec);
		return -1;
	}
	return check_bind(host, port, "export");
}

/* host resolves (what names it in the message). */
static int check_resolves(const char *host, const char *what)
{
	struct addrinfo hints, *ai = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(host, NULL, &hints, &ai);
	if (rc != 0) {
		log_error("%s: cannot resolve %s: %s", what, host,
		          rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	freeaddrinfo(ai);
	return 0;
}

/* A tracker URL: http://HOST[:PORT]/PATH whose host resolves. */
static int check_tracker(const char *url)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	int rc = -1;

	if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL || host[0] == '\0')
		log_error("tracker %s: expected http://HOST[:PORT]/announce", url);
	else
		rc = check_resolves(host, url);
	if (u != NULL)
		evhttp_uri_free(u);
	return rc;
}

/* A file we will write later (--stats, --progress-log, --uri-file): not a directory, writable. */
static int check_writable(const char *path, const char *what)
{
	struct stat st;
	char *copy;
	int rc = 0;

	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode)) {
			log_error("%s %s: is a directory", what, path);
			return -1;
		}
		if (access(path, W_OK) != 0) {
			log_error("%s %s: %s", what, path, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		log_error("%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	copy = xstrdup(path);
	if (access(dirname(copy), W_OK) != 0) {
		log_error("%s %s: cannot create it in %s: %s", what, path, copy, strerror(errno));
		rc = -1;
	}
	free(copy);
	return rc;
}

/* ---- keygen ----------------------------------------------------------- */

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
			return usage_error("keygen", "%s", bad_option(argv));
		}
	}
	if (out == NULL || optind != argc)
		return usage_error("keygen", "keygen needs -o PATH and nothing else");
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

/* ---- progress --------------------------------------------------------- */

struct progress {
	struct event *ev;
	struct swarm *sw;
	int tty;
	int drawn;   /* a bar is on the terminal's current line */
	int stopped; /* not a terminal: the line saying "done" was printed */
	uint64_t start_ns, last_ns, last_done;
	int have_first;
	double rate; /* bytes/s, smoothed */
	uint64_t last_line_ns;
};

/* Before a log line: take the bar off its line (it is drawn again at the next tick). */
static void progress_clear(void *arg)
{
	struct progress *pr = arg;

	if (pr->drawn) {
		fputs("\r\033[K", stdout);
		fflush(stdout);
		pr->drawn = 0;
	}
}

static void fmt_eta(double secs, char *buf, size_t len)
{
	unsigned long s = secs > 0 && secs < 1e7 ? (unsigned long)secs : 0;

	if (secs <= 0 || secs >= 1e7)
		snprintf(buf, len, "ETA --:--");
	else if (s >= 3600)
		snprintf(buf, len, "ETA %lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "ETA %lu:%02lu", s / 60, s % 60);
}

/* Columns of the terminal on stdout (80 if it does not say). */
static int term_columns(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/*
 * Percent, rate and ETA count the bytes that must travel (zero chunks never
 * do). On a terminal: one bar that fits the width; otherwise a line every
 * 5 s until the volume is complete, then one last line and no more.
 */
static void progress_draw(struct progress *pr, int final)
{
	uint64_t done, total, now = now_ns();
	char b1[16], b2[16], b3[16], eta[32], text[160];
	double pct, dt;
	int complete;

	swarm_travel(pr->sw, &done, &total);
	if (!swarm_volume_size(pr->sw) || pr->stopped)
		return;
	complete = swarm_complete(pr->sw);
	if (!pr->have_first) {
		pr->have_first = 1;
		pr->last_done = done;
		pr->last_ns = now;
	}
	dt = (double)(now - pr->last_ns) / 1e9;
	if (dt >= 0.5) {
		double inst = done > pr->last_done ? (double)(done - pr->last_done) / dt : 0;

		pr->rate = pr->rate == 0 ? inst : 0.7 * pr->rate + 0.3 * inst;
		pr->last_done = done;
		pr->last_ns = now;
	}
	/* The last line shows the average network rate over the whole run. */
	if (final && now > pr->start_ns)
		pr->rate = (double)swarm_stats(pr->sw)->bytes_fetched /
		           ((double)(now - pr->start_ns) / 1e9);
	pct = total ? 100.0 * (double)done / (double)total : 100.0;
	if (complete)
		snprintf(eta, sizeof(eta), "done");
	else
		fmt_eta(pr->rate > 0 ? (double)(total - done) / pr->rate : -1, eta, sizeof(eta));
	snprintf(text, sizeof(text), "%5.1f%%  %s / %s  %s/s  %s", pct,
	         fmt_bytes(done, b1, sizeof(b1)), fmt_bytes(total, b2, sizeof(b2)),
	         fmt_bytes((uint64_t)pr->rate, b3, sizeof(b3)), eta);
	if (pr->tty) {
		int cols = term_columns(), width = cols - 1 - (int)strlen(text) - 3;
		char bar[PROGRESS_BAR_MAX + 1];

		if (width > PROGRESS_BAR_MAX)
			width = PROGRESS_BAR_MAX;
		if (width >= PROGRESS_BAR_MIN) {
			int fill = (int)(pct * width / 100);

			for (int i = 0; i < width; i++)
				bar[i] = i < fill ? '#' : '.';
			bar[width] = '\0';
			printf("\r\033[K[%s] %.*s", bar, cols - 1 - width - 3, text);
		} else {
			printf("\r\033[K%.*s", cols - 1, text);
		}
		pr->drawn = 1;
		if (final) {
			printf("\n");
			pr->drawn = 0;
		}
		fflush(stdout);
	} else if (final || complete || now - pr->last_line_ns >= 5000000000ull) {
		pr->last_line_ns = now;
		printf("progress: %s\n", text);
		fflush(stdout);
		pr->stopped = complete || final;
	}
}

static void progress_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	progress_draw(arg, 0);
}

/* --progress-log: machine-readable progress for plots, "UNIX-TIME DONE TOTAL" per line. */
struct progress_log {
	FILE *f;
	struct event *ev;
	struct swarm *sw;
};

static void progress_log_write(struct progress_log *pl)
{
	struct timespec ts;
	uint64_t done, total;

	clock_gettime(CLOCK_REALTIME, &ts);
	swarm_progress(pl->sw, &done, &total);
	fprintf(pl->f, "%lld.%03ld %llu %llu\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
	        (unsigned long long)done, (unsigned long long)total);
	fflush(pl->f);
}

static void progress_log_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	progress_log_write(arg);
}

/* ---- control socket --------------------------------------------------- */

static const char usage_status[] =
    "usage: p2pvbd status [--json] CTL\n"
    "\n"
    "Ask a running seed or fetch (its control socket CTL: --ctl PATH, or the default\n"
    "it logged at start) what it is doing: volume, progress, peers, rates and, for a\n"
    "seed whose VM writes (seed -e), the dirty bytes, the dirtying rate and the\n"
    "estimated cost of a switchover now (dirty bytes / serving rate).\n"
    "\n"
    "  --json      one JSON object instead of text\n"
    "  -h, --help  this text\n";

/* The default control socket of this process: logged at start. Caller frees. */
static char *ctl_default_path(const char *role)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");

	return xasprintf("%s/p2pvbd-%s-%d.ctl", dir && dir[0] ? dir : "/tmp", role, (int)getpid());
}

/* `ctl … freeze` answers once the final generation is out. */
struct freeze_req {
	struct ctl_reply *r;
	struct swarm *sw;
};

static void freeze_done(void *arg, int result)
{
	struct freeze_req *f = arg;
	struct swarm_status st;

	swarm_status(f->sw, &st);
	if (result == 0)
		evbuffer_add_printf(ctl_reply_out(f->r), "frozen at generation %llu\n",
		                    (unsigned long long)st.generation);
	else
		evbuffer_add_printf(ctl_reply_out(f->r), "error: not frozen (thawed, or failed)\n");
	ctl_reply_end(f->r);
	free(f);
}

static void freeze_logged(void *arg, int result)
{
	(void)arg;
	if (result != 0)
		log_error("the freeze did not complete");
}

/* --freeze-on-disconnect: the VM's last NBD client at the source left. */
static void freeze_on_idle(void *arg)
{
	log_info("the last NBD client left: freezing (--freeze-on-disconnect)");
	swarm_freeze(arg, freeze_logged, NULL);
}

static void on_ctl(void *arg, const char *cmd, struct ctl_reply *r)
{
	struct evbuffer *out = ctl_reply_out(r);
	struct swarm_status st;
	struct swarm_peer_info *peers;
	int npeers;
	double cost;
	char b1[16], b2[16], b3[16];

	swarm_status(arg, &st);
	if (strcmp(cmd, "freeze") == 0 || strcmp(cmd, "thaw") == 0) {
		if (!st.seed) {
			evbuffer_add_printf(out, "error: %s is for a seed\n", cmd);
		} else if (cmd[0] == 'f') {
			struct freeze_req *f = xcalloc(1, sizeof(*f));

			f->r = r;
			f->sw = arg;
			ctl_reply_later(r);
			swarm_freeze(arg, freeze_done, f);
		} else {
			swarm_thaw(arg);
			evbuffer_add_printf(out, "thawed\n");
		}
		return;
	}
	cost = st.dirty_bytes > 0 ? (double)st.dirty_bytes / (st.serve_rate > 1 ? st.serve_rate : 1)
	                          : 0;
	npeers = metrics_peers(arg, &peers);
	if (strcmp(cmd, "status json") == 0) {
		evbuffer_add_printf(
		    out,
		    "{\"role\":\"%s\",\"volume_known\":%s,\"complete\":%s,\"final\":%s,"
		    "\"generation\":%llu,"
		    "\"image_size\":%llu,\"chunk_size\":%u,\"chunks\":%u,\"bytes_done\":%llu,"
		    "\"peers_connected\":%d,\"fetch_rate\":%.0f,\"serve_rate\":%.0f,"
		    "\"write_rate\":%.0f,\"dirty_bytes\":%llu,\"switchover_cost_s\":%.3f",
		    st.seed ? "seed" : "fetch", st.have_root ? "true" : "false",
		    st.complete ? "true" : "false", st.final ? "true" : "false",
		    (unsigned long long)st.generation, (unsigned long long)st.image_size,
		    st.chunk_size, st.chunks_total, (unsigned long long)st.bytes_done, st.peers,
		    st.fetch_rate, st.serve_rate, st.write_rate, (unsigned long long)st.dirty_bytes,
		    cost);
		metrics_status_json(out, &st, peers, npeers);
		evbuffer_add_printf(out, "}\n");
	} else if (strcmp(cmd, "status") == 0) {
		evbuffer_add_printf(
		    out, "%s of a %s volume (generation %llu%s, %u chunks of %u KiB)\n",
		    st.seed ? "seed" : "fetch", fmt_bytes(st.image_size, b1, sizeof(b1)),
		    (unsigned long long)st.generation, st.final ? ", final" : "", st.chunks_total,
		    st.chunk_size / 1024);
		if (!st.seed)
			evbuffer_add_printf(out, "progress: %s of %s%s, fetching at %s/s\n",
			                    fmt_bytes(st.bytes_done, b1, sizeof(b1)),
			                    fmt_bytes(st.image_size, b2, sizeof(b2)),
			                    st.complete ? " (complete)" : "",
			                    fmt_bytes((uint64_t)st.fetch_rate, b3, sizeof(b3)));
		evbuffer_add_printf(out, "peers: %d, serving at %s/s\n", st.peers,
		                    fmt_bytes((uint64_t)st.serve_rate, b1, sizeof(b1)));
		if (st.seed)
			evbuffer_add_printf(out,
			                    "dirty: %s (VM writing at %s/s); switchover now would "
			                    "cost about %.1f s of transfer\n",
			                    fmt_bytes(st.dirty_bytes, b1, sizeof(b1)),
			                    fmt_bytes((uint64_t)st.write_rate, b2, sizeof(b2)),
			                    cost);
		metrics_status_text(out, &st, peers, npeers);
	} else {
		evbuffer_add_printf(
		    out,
		    "error: unknown command '%.60s' (try: status, status json, freeze, thaw)\n",
		    cmd);
	}
	free(peers);
}

/* Start the control socket (path, or the default); logs where. NULL on failure. */
static struct ctl *ctl_start(struct event_base *base, struct swarm *sw, const char *path,
                             const char *role)
{
	char *def = path ? NULL : ctl_default_path(role);
	const char *where = path ? path : def;
	struct ctl *c = ctl_new(base, where, on_ctl, sw);

	if (c != NULL)
		log_info("control socket %s (p2pvbd status %s)", where, where);
	free(def);
	return c;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int json = 0, c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'j') {
			json = 1;
		} else if (c == 'h') {
			fputs(usage_status, stdout);
			return 0;
		} else {
			return usage_error("status", "%s", bad_option(argv));
		}
	}
	if (optind + 1 != argc)
		return usage_error("status", "status needs the control socket's path");
	log_init("p2pvbd status", LOG_INFO);
	return ctl_request(argv[optind], json ? "status json" : "status", CTL_TIMEOUT_S) == 0 ? 0
	                                                                                      : 1;
}

static const char usage_ctl[] =
    "usage: p2pvbd ctl CTL COMMAND\n"
    "\n"
    "Tell a running seed (its control socket CTL) what to do:\n"
    "\n"
    "  freeze   the switchover of a live migration: refuse the VM's further writes,\n"
    "           hash what it changed last and publish it as the final generation;\n"
    "           prints 'frozen at generation G' once that is sent to the peers (call\n"
    "           it when the hypervisor has stopped the VM at the source, e.g. in\n"
    "           QEMU's pre-switchover state)\n"
    "  thaw     undo a freeze when the migration is rolled back: the VM may write\n"
    "           again and the destinations wait for a new final generation\n"
    "  status   as 'p2pvbd status CTL'\n"
    "\n"
    "  --timeout SECS  wait at most this long for the answer (default 60)\n"
    "  -h, --help      this text\n";

static int cmd_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t timeout_s = 60;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_duration(optarg, 1, 86400, &timeout_s) != 0)
				return usage_error("ctl", "bad --timeout %s", optarg);
			break;
		case 'h':
			fputs(usage_ctl, stdout);
			return 0;
		default:
			return usage_error("ctl", "%s", bad_option(argv));
		}
	}
	if (optind + 2 != argc)
		return usage_error("ctl", "ctl needs the control socket and one command");
	if (strcmp(argv[optind + 1], "freeze") != 0 && strcmp(argv[optind + 1], "thaw") != 0 &&
	    strcmp(argv[optind + 1], "status") != 0)
		return usage_error("ctl", "unknown command '%s' (freeze, thaw, status)",
		                   argv[optind + 1]);
	log_init("p2pvbd ctl", LOG_INFO);
	return ctl_request(argv[optind], argv[optind + 1], (int)timeout_s) == 0 ? 0 : 1;
}

/* ---- signals ---------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_info("signal %d: shutting down", (int)sig);
	swarm_shutdown(arg);
}

/*
 * SIGINT, SIGTERM and SIGHUP (the terminal went away) all shut down cleanly:
 * peers told, the store committed, sockets removed.
 */
static void add_signals(struct event_base *base, struct swarm *sw, struct event *ev[NSIGNALS])
{
	static const int sigs[NSIGNALS] = {SIGINT, SIGTERM, SIGHUP};

	for (int i = 0; i < NSIGNALS; i++) {
		ev[i] = evsignal_new(base, sigs[i], on_signal, sw);
		event_add(ev[i], NULL);
	}
}

/* ---- seed ------------------------------------------------------------- */

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

/* Write data to path atomically (temp file + rename). */
static int write_file_atomic(const char *path, const char *data)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "w");
	int rc = -1;

	if (f == NULL) {
		log_error("cannot write %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (fputs(data, f) == EOF || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		log_error("cannot write %s: %s", tmp, strerror(errno));
		fclose(f);
		unlink(tmp);
		goto out;
	}
	fclose(f);
	if (rename(tmp, path) != 0) {
		log_error("cannot rename %s to %s: %s", tmp, path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	return rc;
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

static int cmd_seed(int argc, char **argv)
{
	enum {
		O_URI_FILE = 256,
		O_CHUNK,
		O_RECEIPTS,
		O_RATE,
		O_VOLID,
		O_SECRET,
		O_THREADS,
		O_TIMEOUT,
		O_HASH_ONLY,
		O_ADVERTISE,
		O_CTL,
		O_FREEZE_DISC,
		O_MAX_DIRTY,
		O_WRITE_THROUGH,
		O_METRICS
	};
	const char *trackers[URI_MAX_PEERS];
	int ntrackers = 0;
	const char *export_spec = NULL, *ctl_path = NULL, *metrics_spec = NULL;
	struct nbd_server *srv = NULL;
	struct ctl *ctl = NULL;
	struct metrics *mx = NULL;
	struct uri_peer metrics_at;
	static const struct option opts[] = {
	    {"key", required_argument, NULL, 'k'},
	    {"listen", required_argument, NULL, 'l'},
	    {"advertise", required_argument, NULL, O_ADVERTISE},
	    {"tracker", required_argument, NULL, 't'},
	    {"export", required_argument, NULL, 'e'},
	    {"ctl", required_argument, NULL, O_CTL},
	    {"freeze-on-disconnect", no_argument, NULL, O_FREEZE_DISC},
	    {"max-dirty-rate", required_argument, NULL, O_MAX_DIRTY},
	    {"write-through", no_argument, NULL, O_WRITE_THROUGH},
	    {"metrics", required_argument, NULL, O_METRICS},
	    {"uri-file", required_argument, NULL, O_URI_FILE},
	    {"chunk-size", required_argument, NULL, O_CHUNK},
	    {"exit-after-receipts", required_argument, NULL, O_RECEIPTS},
	    {"rate-limit", required_argument, NULL, O_RATE},
	    {"volume-id", required_argument, NULL, O_VOLID},
	    {"secret", required_argument, NULL, O_SECRET},
	    {"threads", required_argument, NULL, O_THREADS},
	    {"timeout", required_argument, NULL, O_TIMEOUT},
	    {"hash-only", no_argument, NULL, O_HASH_ONLY},
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *key_path = NULL, *listen_spec = "0.0.0.0:7001", *uri_file = NULL;
	struct uri_peer listen_at, advertise[URI_MAX_PEERS];
	int nadvertise = 0, hash_only = 0, loglvl = LOG_INFO, rc = 1, fd = -1, c;
	uint64_t receipts = 0, threads = 0, timeout_s = PEER_TIMEOUT_DEFAULT;
	uint64_t chunk_size = MANIFEST_CHUNK_DEFAULT, rate = 0, image_size, max_dirty = 0;
	int freeze_on_disc = 0, write_through = 0;
	uint8_t volume_id[MANIFEST_ID_LEN], secret[32];
	int have_volid = 0, have_secret = 0;
	struct vcrypto_identity id;
	struct manifest m;
	struct manifest_entry *entries = NULL;
	struct event_base *base = NULL;
	struct swarm *sw = NULL;
	struct event *sigs[NSIGNALS] = {NULL};
	struct uri u;
	char uri_text[URI_MAX_LEN];
	uint16_t port;
	struct scan_display disp;
	uint64_t t0;
	const char *image;
	struct imglock *ilock = NULL;

	memset(&m, 0, sizeof(m));
	memset(&id, 0, sizeof(id));
	while ((c = getopt_long(argc, argv, "k:l:t:e:qvh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_path = optarg;
			break;
		case 'e':
			export_spec = optarg;
			break;
		case O_CTL:
			ctl_path = optarg;
			break;
		case O_FREEZE_DISC:
			freeze_on_disc = 1;
			break;
		case O_WRITE_THROUGH:
			write_through = 1;
			break;
		case O_METRICS:
			metrics_spec = optarg;
			break;
		case O_MAX_DIRTY:
			if (parse_rate(optarg, &max_dirty) != 0)
				return usage_error("seed", "bad --max-dirty-rate %s", optarg);
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case 't':
			if (ntrackers == URI_MAX_PEERS)
				return usage_error("seed", "at most %d trackers", URI_MAX_PEERS);
			if (strncmp(optarg, "http://", 7) != 0 || strlen(optarg) >= 512)
				return usage_error(
				    "seed", "bad --tracker %s (http://HOST:PORT/announce)", optarg);
			trackers[ntrackers++] = optarg;
			break;
		case O_ADVERTISE:
			if (nadvertise == URI_MAX_PEERS ||
			    uri_parse_hostport(optarg, strlen(optarg), &advertise[nadvertise]) != 0)
				return usage_error("seed", "bad --advertise %s", optarg);
			nadvertise++;
			break;
		case O_URI_FILE:
			uri_file = optarg;
			break;
		case O_CHUNK:
			if (parse_size(optarg, &chunk_size) != 0 || chunk_size > UINT32_MAX ||
			    !manifest_chunk_size_valid((uint32_t)chunk_size))
				return usage_error("seed",
				                   "--chunk-size must be a power of two from 64K "
				                   "to 4M, not %s",
				                   optarg);
			break;
		case O_RECEIPTS:
			if (parse_uint(optarg, 1, 1000000, &receipts) != 0)
				return usage_error("seed", "bad --exit-after-receipts %s", optarg);
			break;
		case O_RATE:
			if (parse_rate(optarg, &rate) != 0)
				return usage_error("seed", "bad --rate-limit %s", optarg);
			break;
		case O_VOLID:
			if (hex_decode(optarg, strlen(optarg), volume_id, sizeof(volume_id)) != 0)
				return usage_error("seed", "--volume-id needs 32 hex digits");
			have_volid = 1;
			break;
		case O_SECRET:
			if (hex_decode(optarg, strlen(optarg), secret, sizeof(secret)) != 0)
				return usage_error("seed", "--secret needs 64 hex digits");
			have_secret = 1;
			break;
		case O_THREADS:
			if (parse_uint(optarg, 1, 64, &threads) != 0)
				return usage_error("seed", "bad --threads %s", optarg);
			break;
		case O_TIMEOUT:
			if (parse_duration(optarg, 1, 3600, &timeout_s) != 0)
				return usage_error("seed", "bad --timeout %s", optarg);
			break;
		case O_HASH_ONLY:
			hash_only = 1;
			break;
		case 'q':
			loglvl = LOG_ERROR;
			break;
		case 'v':
			loglvl = LOG_DEBUG;
			break;
		case 'h':
			fputs(usage_seed, stdout);
			return 0;
		default:
			return usage_error("seed", "%s", bad_option(argv));
		}
	}
	if (optind + 1 != argc)
		return usage_error("seed", "seed needs exactly one IMAGE");
	image = argv[optind];
	if (key_path == NULL)
		return usage_error("seed", "seed needs -k KEY (make one with p2pvbd keygen)");
	if ((freeze_on_disc || max_dirty || write_through) && export_spec == NULL)
		return usage_error("seed", "--freeze-on-disconnect, --max-dirty-rate and "
		                           "--write-through need -e (a VM)");
	if (parse_listen(listen_spec, &listen_at) != 0)
		return usage_error("seed", "bad --listen %s (HOST:PORT, numeric host)",
		                   listen_spec);
	if (metrics_spec != NULL && parse_listen(metrics_spec, &metrics_at) != 0)
		return usage_error("seed", "bad --metrics %s (HOST:PORT, numeric host)",
		                   metrics_spec);
	log_init("p2pvbd seed", loglvl);

	if (vcrypto_identity_load(key_path, &id) != 0)
		goto out;
	/* Checks before the hash, which may take minutes. */
	if (!hash_only) {
		if (check_bind(listen_at.host, listen_at.port, "--listen") != 0 ||
		    (metrics_spec != NULL &&
		     check_bind(metrics_at.host, metrics_at.port, "--metrics") != 0) ||
		    (export_spec != NULL && check_export(export_spec) != 0) ||
		    (ctl_path != NULL && sockpath_claim(ctl_path, "control socket") != 0) ||
		    (uri_file != NULL && check_writable(uri_file, "--uri-file") != 0))
			goto out;
		for (int i = 0; i < ntrackers; i++)
			if (check_tracker(trackers[i]) != 0)
				goto out;
	}
	fd = open(image, (export_spec ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0) {
		log_error("cannot open %s: %s", image, strerror(errno));
		goto out;
	}
	/* Held until exit: QEMU and other p2pvbd processes see how we use the image. */
	if (imglock_acquire(image, fd, export_spec ? IMGLOCK_EXCLUSIVE : IMGLOCK_SHARED_READ,
	                    &ilock) != 0)
		goto out;
	if (image_size_of(fd, image, &image_size) != 0)
		goto out;
	if ((image_size + chunk_size - 1) / chunk_size > MANIFEST_MAX_CHUNKS) {
		log_error("%s: too many chunks; use a larger --chunk-size", image);
		goto out;
	}
	entries = xcalloc(manifest_chunk_count(image_size, (uint32_t)chunk_size), sizeof(*entries));
	disp.tty = isatty(STDERR_FILENO) && loglvl >= LOG_INFO;
	disp.start_ns = t0 = now_ns();
	if (scan_image(fd, image_size, (uint32_t)chunk_size, 0, (int)threads, entries,
	               scan_progress, &disp) != 0)
		goto out;
	if (hash_only) {
		printf("{\"hash_seconds\":%.6f,\"bytes\":%llu,\"chunks\":%u}\n",
		       (double)(now_ns() - t0) / 1e9, (unsigned long long)image_size,
		       manifest_chunk_count(image_size, (uint32_t)chunk_size));
		rc = 0;
		goto out;
	}
	if (!have_volid)
		vcrypto_random(volume_id, sizeof(volume_id));
	if (!have_secret)
		vcrypto_random(secret, sizeof(secret));
	if (manifest_build(&m, volume_id, image_size, (uint32_t)chunk_size, 0, entries, id.sk) !=
	    0) {
		log_error("cannot build the manifest");
		goto out;
	}
	entries = NULL; /* owned by m */
	{
		uint32_t zero = 0;
		char sz[16];

		for (uint32_t i = 0; i < m.root.chunk_count; i++)
			zero += (m.entries[i].flags & MANIFEST_F_ZERO) != 0;
		log_info("%s: %s, %u chunks of %llu KiB (%u zero), hashed in %.2f s", image,
		         fmt_bytes(image_size, sz, sizeof(sz)), m.root.chunk_count,
		         (unsigned long long)chunk_size / 1024, zero,
		         (double)(now_ns() - t0) / 1e9);
	}

	base = event_base_new();
	{
		struct swarm_opts o;

		memset(&o, 0, sizeof(o));
		o.role = SWARM_SEED;
		o.base = base;
		o.identity = &id;
		memcpy(o.volume_id, volume_id, sizeof(volume_id));
		memcpy(o.source_key, id.pk, sizeof(o.source_key));
		memcpy(o.join_secret, secret, sizeof(secret));
		o.timeout_s = (int)timeout_s;
		o.upload_rate = rate;
		o.manifest = &m;
		o.image_fd = fd;
		o.exit_after_receipts = (int)receipts;
		o.max_dirty_rate = max_dirty;
		o.write_through = write_through;
		o.image_path = image;
		o.trackers = trackers;
		o.ntrackers = ntrackers;
		/* Without a VM here the image never changes: generation 0 is final. */
		if (export_spec == NULL)
			manifest_set_flags(&m, MANIFEST_ROOT_F_FINAL, id.sk);
		o.image_fixed = export_spec == NULL;
		sw = swarm_new(&o);
	}
	if (swarm_listen(sw, listen_at.host, listen_at.port, &port) != 0)
		goto out;

	memset(&u, 0, sizeof(u));
	memcpy(u.volume_id, volume_id, sizeof(volume_id));
	memcpy(u.key, id.pk, sizeof(u.key));
	memcpy(u.secret, secret, sizeof(secret));
	for (int i = 0; i < ntrackers; i++)
		snprintf(u.tracker[i], sizeof(u.tracker[i]), "%s", trackers[i]);
	u.ntrackers = ntrackers;
	if (nadvertise > 0) {
		memcpy(u.peer, advertise, (size_t)nadvertise * sizeof(advertise[0]));
		u.npeers = nadvertise;
	} else {
		u.npeers = 1;
		u.peer[0] = listen_at;
		u.peer[0].port = port;
		if (strcmp(listen_at.host, "0.0.0.0") == 0 || strcmp(listen_at.host, "::") == 0) {
			if (gethostname(u.peer[0].host, sizeof(u.peer[0].host)) != 0)
				snprintf(u.peer[0].host, sizeof(u.peer[0].host), "localhost");
		}
	}
	if (uri_format(&u, uri_text, sizeof(uri_text)) < 0) {
		log_error("the URI does not fit %d bytes", URI_MAX_LEN);
		goto out;
	}
	printf("%s\n", uri_text);
	fflush(stdout);
	if (uri_file != NULL) {
		char *line = xasprintf("%s\n", uri_text);
		int w = write_file_atomic(uri_file, line);

		free(line);
		if (w != 0)
			goto out;
	}
	log_info("serving on %s:%u", listen_at.host, port);
	if (export_spec != NULL) {
		srv = nbd_server_new(base, sw, export_spec);
		if (srv == NULL)
			goto out;
		printf("exporting on %s\n", nbd_server_address(srv));
		fflush(stdout);
		log_info("NBD export on %s", nbd_server_address(srv));
		if (freeze_on_disc)
			nbd_server_set_idle_cb(srv, freeze_on_idle, sw);
	}
	if (metrics_spec != NULL &&
	    (mx = metrics_new(base, sw, metrics_at.host, metrics_at.port)) == NULL)
		goto out;
	ctl = ctl_start(base, sw, ctl_path, "seed");
	if (ctl == NULL && ctl_path != NULL)
		goto out; /* asked for explicitly; the default is best effort */
	add_signals(base, sw, sigs);
	swarm_start(sw);
	/* Under systemd (Type=notify): the URI is out and the chunks are served. */
	sd_notifyf(0, "READY=1\nSTATUS=serving %s on port %u", image, (unsigned)port);
	event_base_dispatch(base);
	sd_notify(0, "STOPPING=1");
	{
		const struct swarm_stats *st = swarm_stats(sw);
		char b[16];

		log_info("served %s; %llu receipts", fmt_bytes(st->bytes_served, b, sizeof(b)),
		         (unsigned long long)st->receipts);
		if (export_spec != NULL)
			log_info("the VM wrote %s into %llu chunks since they were hashed",
			         fmt_bytes(st->bytes_written, b, sizeof(b)),
			         (unsigned long long)st->chunks_dirty);
	}
	rc = swarm_result(sw) == 0 ? 0 : 1;
out:
	for (int i = 0; i < NSIGNALS; i++)
		if (sigs[i])
			event_free(sigs[i]);
	nbd_server_free(srv);
	ctl_free(ctl);
	metrics_free(mx);
	swarm_free(sw);
	if (base)
		event_base_free(base);
	manifest_free(&m);
	free(entries);
	imglock_release(ilock);
	if (fd >= 0)
		close(fd);
	vcrypto_identity_wipe(&id);
	vcrypto_wipe(secret, sizeof(secret));
	return rc;
}

/* ---- fetch ------------------------------------------------------------ */

/* The NBD export of a fetch, started once the volume is known. */
struct export_ctx {
	struct event_base *base;
	struct swarm *sw;
	const char *spec;
	struct nbd_server *srv;
};

static void export_start(void *arg)
{
	struct export_ctx *ex = arg;

	ex->srv = nbd_server_new(ex->base, ex->sw, ex->spec);
	if (ex->srv == NULL) {
		swarm_shutdown(ex->sw);
		return;
	}
	/* On stdout, so that scripts can wait for it. */
	printf("exporting on %s\n", nbd_server_address(ex->srv));
	fflush(stdout);
	log_info("NBD export on %s", nbd_server_address(ex->srv));
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
 * Where OUT's sidecar files (state, key, pages) go, as a path prefix: OUT
 * itself, or DIR/basename(OUT) with --state-dir DIR. A block device's never
 * go beside it in /dev: FETCH_BLOCKDEV_STATE_DIR unless --state-dir says
 * otherwise. The directory is made (0700) if missing. NULL (logged) if it
 * cannot be. Caller frees.
 */
static char *fetch_sidecar(const char *out, const char *state_dir)
{
	struct stat st;
	char *copy, *r;
	const char *dir = state_dir;

	if (dir == NULL && stat(out, &st) == 0 && S_ISBLK(st.st_mode))
		dir = FETCH_BLOCKDEV_STATE_DIR;
	if (dir == NULL)
		return xstrdup(out);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		log_error("state directory %s: %s", dir, strerror(errno));
		return NULL;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) != 0) {
		log_error("state directory %s: not a writable directory", dir);
		return NULL;
	}
	copy = xstrdup(out);
	r = xasprintf("%s/%s", dir, basename(copy));
	free(copy);
	return r;
}

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
		return check_writable(out, "output");
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
static const char *uri_cut_hint(const char *uri)
{
	return strncmp(uri, URI_SCHEME, strlen(URI_SCHEME)) == 0 && strchr(uri, '&') == NULL
	           ? "; the shell cuts an unquoted URI at '&': quote it, "
	             "p2pvbd fetch 'p2pvbd://…' OUT (or use @FILE)"
	           : "";
}

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
	return write_file_atomic(path, buf);
}

static int cmd_fetch(int argc, char **argv)
{
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
		O_METRICS
	};
	static const struct option opts[] = {
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
	    {"quiet", no_argument, NULL, 'q'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *key_path = NULL, *stats_path = NULL, *out, *export_spec = NULL;
	const char *metrics_spec = NULL;
	struct metrics *mx = NULL;
	struct uri_peer metrics_at;
	int no_boost = 0, lazy = 0, mirror = 0, no_listen = 0;
	const char *basis = NULL, *progress_log = NULL, *ctl_path = NULL, *state_dir = NULL;
	char *sidecar = NULL, *uri_text = xcalloc(1, URI_MAX_LEN + 1);
	int made_key = 0;
	struct ctl *ctl = NULL;
	const char *trackers[URI_MAX_PEERS];
	const char *listen_spec = NULL;
	struct uri_peer listen_at;
	struct export_ctx ex;
	uint64_t timeout_s = PEER_TIMEOUT_DEFAULT, give_up = FETCH_GIVE_UP_DEFAULT;
	int force = 0, show_progress = 1, loglvl = LOG_INFO, rc = 1, c;
	struct uri *u = xcalloc(1, sizeof(*u));
	struct vcrypto_identity id;
	struct event_base *base = NULL;
	struct swarm *sw = NULL;
	struct event *sigs[NSIGNALS] = {NULL};
	struct progress pr;
	struct progress_log pl;
	char err[256];
	uint64_t t0 = now_ns();

	memset(&id, 0, sizeof(id));
	memset(&pr, 0, sizeof(pr));
	memset(&pl, 0, sizeof(pl));
	memset(&ex, 0, sizeof(ex));
	while ((c = getopt_long(argc, argv, "k:e:l:qvh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			key_path = optarg;
			break;
		case 'e':
			export_spec = optarg;
			break;
		case O_NO_BOOST:
			no_boost = 1;
			break;
		case O_LAZY:
			lazy = 1;
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case O_MIRROR:
			mirror = 1;
			break;
		case O_NO_LISTEN:
			no_listen = 1;
			break;
		case O_BASIS:
			basis = optarg;
			break;
		case O_PROGRESS_LOG:
			progress_log = optarg;
			break;
		case O_CTL:
			ctl_path = optarg;
			break;
		case O_STATE_DIR:
			state_dir = optarg;
			break;
		case O_METRICS:
			metrics_spec = optarg;
			break;
		case O_STATS:
			stats_path = optarg;
			break;
		case O_TIMEOUT:
			if (parse_duration(optarg, 1, 3600, &timeout_s) != 0) {
				rc = usage_error("fetch", "bad --timeout %s", optarg);
				goto out_free;
			}
			break;
		case O_GIVE_UP:
			if (parse_duration(optarg, 1, 1000000, &give_up) != 0) {
				rc = usage_error("fetch", "bad --give-up %s", optarg);
				goto out_free;
			}
			break;
		case O_FORCE:
			force = 1;
			break;
		case O_NO_PROGRESS:
			show_progress = 0;
			break;
		case 'q':
			loglvl = LOG_ERROR;
			show_progress = 0;
			break;
		case 'v':
			loglvl = LOG_DEBUG;
			break;
		case 'h':
			fputs(usage_fetch, stdout);
			rc = 0;
			goto out_free;
		default:
			rc = usage_error("fetch", "%s", bad_option(argv));
			goto out_free;
		}
	}
	if (optind + 2 != argc) {
		rc = usage_error("fetch", "fetch needs a URI and an output path%s",
		                 optind + 1 == argc ? uri_cut_hint(argv[optind]) : "");
		goto out_free;
	}
	log_init("p2pvbd fetch", loglvl);
	if (fetch_uri_arg(argv[optind], uri_text, URI_MAX_LEN + 1) != 0)
		goto out_free;
	if (uri_parse(uri_text, strlen(uri_text), u, err, sizeof(err)) != 0) {
		rc = usage_error("fetch", "bad volume URI: %s%s", err, uri_cut_hint(uri_text));
		goto out_free;
	}
	if (lazy && export_spec == NULL) {
		rc = usage_error("fetch", "--lazy needs -e (nothing would ever be fetched)");
		goto out_free;
	}
	if (listen_spec != NULL && no_listen) {
		rc = usage_error("fetch", "--listen and --no-listen contradict each other");
		goto out_free;
	}
	if (listen_spec == NULL && !no_listen && u->ntrackers > 0)
		listen_spec = "0.0.0.0:0"; /* peers found through a tracker must reach us */
	if (listen_spec != NULL && parse_listen(listen_spec, &listen_at) != 0) {
		rc = usage_error("fetch", "bad --listen %s (HOST:PORT, numeric host)", listen_spec);
		goto out_free;
	}
	if (metrics_spec != NULL && parse_listen(metrics_spec, &metrics_at) != 0) {
		rc = usage_error("fetch", "bad --metrics %s (HOST:PORT, numeric host)",
		                 metrics_spec);
		goto out_free;
	}
	out = argv[optind + 1];

	/* Checks before anything is made or dialled. */
	sidecar = fetch_sidecar(out, state_dir);
	if (sidecar == NULL || check_output(out, sidecar, force) != 0)
		goto out_free;
	if (listen_spec != NULL && check_bind(listen_at.host, listen_at.port, "--listen") != 0)
		goto out_free;
	if (metrics_spec != NULL && check_bind(metrics_at.host, metrics_at.port, "--metrics") != 0)
		goto out_free;
	if (export_spec != NULL && check_export(export_spec) != 0)
		goto out_free;
	if (ctl_path != NULL && sockpath_claim(ctl_path, "control socket") != 0)
		goto out_free;
	/* (A --basis that cannot be read is only a warning, later: everything is fetched.) */
	if ((stats_path != NULL && check_writable(stats_path, "--stats") != 0) ||
	    (progress_log != NULL && check_writable(progress_log, "--progress-log") != 0))
		goto out_free;
	for (int i = 0; i < u->npeers; i++)
		if (check_resolves(u->peer[i].host, "peer in the URI") != 0)
			goto out_free;
	for (int i = 0; i < u->ntrackers; i++)
		if (check_tracker(u->tracker[i]) != 0)
			goto out_free;
	if (fetch_identity(key_path, sidecar, &id, &made_key) != 0)
		goto out_free;

	base = event_base_new();
	{
		struct swarm_opts o;

		memset(&o, 0, sizeof(o));
		o.role = SWARM_FETCH;
		o.base = base;
		o.identity = &id;
		memcpy(o.volume_id, u->volume_id, sizeof(o.volume_id));
		memcpy(o.source_key, u->key, sizeof(o.source_key));
		memcpy(o.join_secret, u->secret, sizeof(o.join_secret));
		o.timeout_s = (int)timeout_s;
		o.out_path = out;
		o.sidecar_path = sidecar;
		o.store_flags = STORE_F_CREATE | (force ? STORE_F_FORCE : 0);
		o.peers = u->peer;
		o.npeers = u->npeers;
		o.give_up_s = (int)give_up;
		o.no_boost = no_boost;
		o.lazy = lazy;
		o.basis_path = basis;
		for (int i = 0; i < u->ntrackers; i++)
			trackers[i] = u->tracker[i];
		o.trackers = trackers;
		o.ntrackers = u->ntrackers;
		sw = swarm_new(&o);
	}
	if (listen_spec != NULL) {
		uint16_t port;

		if (swarm_listen(sw, listen_at.host, listen_at.port, &port) != 0)
			goto out_swarm;
		printf("listening on %s:%u\n", listen_at.host, port);
		fflush(stdout);
	}
	if (mirror)
		swarm_keep_running(sw);
	if (export_spec != NULL) {
		ex.base = base;
		ex.sw = sw;
		ex.spec = export_spec;
		swarm_keep_running(sw);
		swarm_set_ready_cb(sw, export_start, &ex);
	}
	if (show_progress) {
		struct timeval tv;

		pr.sw = sw;
		pr.tty = isatty(STDOUT_FILENO);
		pr.start_ns = now_ns();
		tv.tv_sec = pr.tty ? 0 : 1;
		tv.tv_usec = pr.tty ? 200000 : 0;
		pr.ev = event_new(base, -1, EV_PERSIST, progress_cb, &pr);
		event_add(pr.ev, &tv);
		if (pr.tty)
			log_set_before(progress_clear, &pr);
	}
	if (progress_log != NULL) {
		struct timeval tv = {0, 200000};

		pl.f = fopen(progress_log, "a");
		if (pl.f == NULL) {
			log_error("cannot open %s: %s", progress_log, strerror(errno));
			goto out_swarm;
		}
		pl.sw = sw;
		pl.ev = event_new(base, -1, EV_PERSIST, progress_log_cb, &pl);
		event_add(pl.ev, &tv);
	}
	if (metrics_spec != NULL &&
	    (mx = metrics_new(base, sw, metrics_at.host, metrics_at.port)) == NULL)
		goto out_swarm;
	ctl = ctl_start(base, sw, ctl_path, "fetch");
	if (ctl == NULL && ctl_path != NULL)
		goto out_swarm; /* asked for explicitly; the default is best effort */
	add_signals(base, sw, sigs);
	swarm_start(sw);
	/* Under systemd (Type=notify): listening, and joining the swarm. */
	sd_notifyf(0, "READY=1\nSTATUS=fetching into %s", out);
	event_base_dispatch(base);
	sd_notify(0, "STOPPING=1");
	if (show_progress)
		progress_draw(&pr, 1);
	if (pl.f != NULL)
		progress_log_write(&pl);
	rc = swarm_result(sw) == 0 ? 0 : 1;
	{
		const struct swarm_stats *st = swarm_stats(sw);
		double secs = (double)(now_ns() - t0) / 1e9;
		char b[16];

		if (rc == 0)
			log_info(
			    "done in %.1f s: fetched %s in %llu chunks (%llu resumed, %llu from "
			    "the basis, %llu zero)",
			    secs, fmt_bytes(st->bytes_fetched, b, sizeof(b)),
			    (unsigned long long)st->chunks_fetched,
			    (unsigned long long)st->chunks_resumed,
			    (unsigned long long)st->chunks_basis,
			    (unsigned long long)st->chunks_zero);
		if (stats_path != NULL && write_stats(stats_path, st, secs) != 0)
			rc = 1;
	}
out_swarm:
	nbd_server_free(ex.srv);
	ctl_free(ctl);
	metrics_free(mx);
	if (pl.ev)
		event_free(pl.ev);
	if (pl.f)
		fclose(pl.f);
	if (pr.ev)
		event_free(pr.ev);
	for (int i = 0; i < NSIGNALS; i++)
		if (sigs[i])
			event_free(sigs[i]);
	swarm_free(sw);
	event_base_free(base);
	log_set_before(NULL, NULL); /* pr goes out of scope */
out_free:
	if (rc != 0 && made_key)
		fetch_forget_identity(sidecar);
	free(sidecar);
	vcrypto_identity_wipe(&id);
	vcrypto_wipe(u, sizeof(*u));
	vcrypto_wipe(uri_text, URI_MAX_LEN + 1);
	free(uri_text);
	free(u);
	return rc;
}

int main(int argc, char **argv)
{
	const char *cmd;

	signal(SIGPIPE, SIG_IGN);
	opterr = 0; /* usage_error says what was wrong, in one line */
	/*
	 * Chunk buffers and frames of a few hundred KiB are allocated and freed
	 * all the time. By default glibc serves them with fresh mmaps (or trims
	 * the heap after them), so every one costs page faults on first touch;
	 * keeping them in the heap lets freed memory be reused warm.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024 * 1024);
	log_init("p2pvbd", LOG_INFO);
	if (argc < 2)
		return usage_error(NULL, "no command given");
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		fputs(usage_main, stdout);
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
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen(argc - 1, argv + 1);
	if (strcmp(cmd, "seed") == 0)
		return cmd_seed(argc - 1, argv + 1);
	if (strcmp(cmd, "fetch") == 0)
		return cmd_fetch(argc - 1, argv + 1);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - 1, argv + 1);
	if (strcmp(cmd, "ctl") == 0)
		return cmd_ctl(argc - 1, argv + 1);
	return usage_error(NULL, "unknown command '%s'", cmd);
}
