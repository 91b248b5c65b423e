/* SPDX-License-Identifier: ISC */
/*
 * cmd_ctl: controlling a running seed or fetch. The clients, `p2pvbd status`
 * and `p2pvbd ctl`, and the server side: the control socket's commands
 * (status, status json, freeze, thaw, migrate; see ctl.h), the freeze when the VM's
 * last NBD client leaves, the signals that stop it cleanly, and --metrics
 * beside them.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "internal.h"
#include "metrics.h"
#include "migrate.h"
#include "parse.h"
#include "swarm.h"
#include "uri.h"
#include "util.h"

/* ctl --timeout: the default and the longest wait for an answer, in seconds. */
#define CTL_WAIT_DEFAULT_S 60
#define CTL_WAIT_MAX_S     86400
/*
 * ctl migrate: the client waits this much longer than the migration's time
 * limit, for the seed to cancel it, thaw and see the VM run again.
 */
#define CTL_MIGRATE_MARGIN_S 60

static const char usage_status[] =
    "usage: p2pvbd status [--json] CTL\n"
    "\n"
    "Ask a running seed or fetch (its control socket CTL: --ctl PATH, or the default\n"
    "it logged at start) what it is doing: volume, progress, peers, rates and, for a\n"
    "seed whose VM writes (seed -e), the dirty bytes, the dirtying rate, the lag (what\n"
    "no destination holds yet), the estimated cost of a switchover now ((dirty + lag)\n"
    "/ serving rate) against --downtime-target, and auto-converge's cap, if any.\n"
    "\n"
    "  --json      one JSON object instead of text\n"
    "  -h, --help  this text\n";

static const char usage_ctl[] =
    "usage: p2pvbd ctl [--timeout SECS] CTL COMMAND\n"
    "       p2pvbd ctl [--timeout SECS] [--postcopy] CTL migrate URI\n"
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
    "  migrate URI\n"
    "           run a QEMU live migration of the VM on this seed's export (a seed\n"
    "           started with -e and --qmp PATH, the source QEMU's QMP socket) to URI\n"
    "           (tcp:HOST:PORT, unix:PATH, vsock:CID:PORT, rdma:HOST:PORT: where the\n"
    "           destination QEMU waits with -incoming, on a fetch -e export): wait\n"
    "           until the destinations are nearly in sync (switchover cost at most\n"
    "           --downtime-target), migrate the RAM with pause-before-switchover and\n"
    "           return-path, freeze at pre-switchover, let QEMU finish; prints the\n"
    "           phases (sync, RAM, freeze, downtime as QEMU measured it, total). If\n"
    "           it fails after the freeze, the seed thaws and the source VM runs\n"
    "           again (QEMU's default werror=enospc pauses it on a write refused\n"
    "           meanwhile; the seed resumes it). Waits for the end: the whole\n"
    "           migration must end within --timeout (default 3600 s; the first copy\n"
    "           of the disk counts), else the seed cancels it and the VM runs on\n"
    "\n"
    "  --timeout SECS  wait at most this long for the answer (default 60; for migrate\n"
    "                  the migration's time limit, default 3600, and the client waits\n"
    "                  a minute longer)\n"
    "  --postcopy      with migrate: do not wait for the disk; migrate the RAM at once\n"
    "                  and switch over when it has moved: the destination VM runs while\n"
    "                  the rest of its disk arrives, its reads first. There is no\n"
    "                  falling back to the source after that: the seed must serve until\n"
    "                  the destination is complete\n"
    "  -h, --help      this text\n";

/* ---- the clients ------------------------------------------------------- */

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
			return cli_usage_error("p2pvbd status", "%s", cli_bad_option(argv));
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("p2pvbd status", "status needs the control socket's path");
	log_init("p2pvbd status", LOG_LEVEL_INFO);
	return ctl_request(argv[optind], json ? "status json" : "status", CTL_TIMEOUT_S) == 0 ? 0
	                                                                                      : 1;
}

/* `ctl CTL migrate URI` (argv[0] CTL): checked here, run by the seed. */
static int ctl_migrate(int argc, char **argv, uint64_t timeout_s, int postcopy)
{
	struct migrate_req req;
	char err[256], *line;
	int rc;

	if (argc != 3)
		return cli_usage_error("p2pvbd ctl", "migrate needs one URI (e.g. tcp:HOST:PORT)");
	if (strpbrk(argv[2], " \t\r\n") != NULL)
		return cli_usage_error("p2pvbd ctl", "the migration URI has a blank: '%s'",
		                       argv[2]);
	if (timeout_s == 0)
		timeout_s = MIGRATE_TIMEOUT_DEFAULT_S;
	if (timeout_s > MIGRATE_TIMEOUT_MAX_S)
		return cli_usage_error("p2pvbd ctl", "--timeout for migrate: at most %d s",
		                       MIGRATE_TIMEOUT_MAX_S);
	line = xasprintf("migrate --timeout %llu%s %s", (unsigned long long)timeout_s,
	                 postcopy ? " --postcopy" : "", argv[2]);
	if (migrate_parse(line + strlen("migrate "), &req, err, sizeof(err)) != 0) {
		free(line);
		return cli_usage_error("p2pvbd ctl", "%s", err);
	}
	log_init("p2pvbd ctl", LOG_LEVEL_INFO);
	rc = ctl_request(argv[0], line, (int)(timeout_s + CTL_MIGRATE_MARGIN_S));
	free(line);
	return rc == 0 ? 0 : 1;
}

static int cmd_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"postcopy", no_argument, NULL, 'p'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t timeout_s = 0;
	int c, postcopy = 0;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_duration(optarg, 1, CTL_WAIT_MAX_S, &timeout_s) != 0)
				return cli_usage_error("p2pvbd ctl", "bad --timeout %s", optarg);
			break;
		case 'p':
			postcopy = 1;
			break;
		case 'h':
			fputs(usage_ctl, stdout);
			return 0;
		default:
			return cli_usage_error("p2pvbd ctl", "%s", cli_bad_option(argv));
		}
	}
	if (optind + 2 <= argc && strcmp(argv[optind + 1], "migrate") == 0)
		return ctl_migrate(argc - optind, argv + optind, timeout_s, postcopy);
	if (optind + 2 != argc)
		return cli_usage_error("p2pvbd ctl",
		                       "ctl needs the control socket and one command");
	if (strcmp(argv[optind + 1], "freeze") != 0 && strcmp(argv[optind + 1], "thaw") != 0 &&
	    strcmp(argv[optind + 1], "status") != 0)
		return cli_usage_error("p2pvbd ctl",
		                       "unknown command '%s' (freeze, thaw, status, migrate)",
		                       argv[optind + 1]);
	if (postcopy)
		return cli_usage_error("p2pvbd ctl", "--postcopy is for migrate");
	log_init("p2pvbd ctl", LOG_LEVEL_INFO);
	return ctl_request(argv[optind], argv[optind + 1],
	                   (int)(timeout_s ? timeout_s : CTL_WAIT_DEFAULT_S)) == 0
	           ? 0
	           : 1;
}

const struct cmd_entry cmd_status_entry = {
    .name = "status",
    .args = "[--json] CTL",
    .summary = "what a running seed or fetch is doing (its --ctl socket)",
    .usage = usage_status,
    .exec = cmd_status,
};

const struct cmd_entry cmd_ctl_entry = {
    .name = "ctl",
    .args = "CTL COMMAND",
    .summary = "tell a running seed: freeze (switchover), thaw (roll back), migrate URI",
    .usage = usage_ctl,
    .exec = cmd_ctl,
};

/* ---- the server side, in a seed or fetch -------------------------------- */

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

void cmd_ctl_freeze_on_idle(void *arg)
{
	log_info("the last NBD client left: freezing (--freeze-on-disconnect)");
	swarm_freeze(arg, freeze_logged, NULL);
}

/* freeze or thaw (cmd), for a seed only; a freeze answers later. */
static void on_freeze_thaw(struct swarm *sw, const struct swarm_status *st, const char *cmd,
                           struct ctl_reply *r)
{
	struct evbuffer *out = ctl_reply_out(r);

	if (!st->seed) {
		evbuffer_add_printf(out, "error: %s is for a seed\n", cmd);
	} else if (cmd[0] == 'f') {
		struct freeze_req *f = xcalloc(1, sizeof(*f));

		f->r = r;
		f->sw = sw;
		ctl_reply_later(r);
		swarm_freeze(sw, freeze_done, f);
	} else {
		swarm_thaw(sw);
		evbuffer_add_printf(out, "thawed\n");
	}
}

/* `ctl … migrate` answers when the migration has ended. */
static void migrate_done(void *arg, int ok, const char *summary)
{
	struct ctl_reply *r = arg;

	evbuffer_add_printf(ctl_reply_out(r), "%s%s\n", ok ? "" : "error: ", summary);
	ctl_reply_end(r);
}

/* migrate ARGS (the line after "migrate "), for a seed with --qmp; answers later. */
static void on_migrate(struct cmd_ctl_server *cs, const struct swarm_status *st, const char *args,
                       struct ctl_reply *r)
{
	struct evbuffer *out = ctl_reply_out(r);
	struct migrate_req req;
	char err[256];

	if (!st->seed || cs->mig == NULL) {
		evbuffer_add_printf(out,
		                    "error: migrate needs a seed started with -e and --qmp PATH "
		                    "(the source QEMU's QMP socket)\n");
		return;
	}
	if (migrate_parse(args, &req, err, sizeof(err)) != 0 ||
	    migrate_start(cs->mig, &req, migrate_done, r, err, sizeof(err)) != 0) {
		evbuffer_add_printf(out, "error: %s\n", err);
		return;
	}
	ctl_reply_later(r);
}

/* `status json`: one JSON object. cost: the switchover's estimated seconds. */
static void status_json(struct evbuffer *out, const struct swarm_status *st, double cost,
                        const struct swarm_peer_info *peers, int npeers, const struct migrate *mig)
{
	evbuffer_add_printf(
	    out,
	    "{\"role\":\"%s\",\"volume_known\":%s,\"complete\":%s,\"final\":%s,"
	    "\"generation\":%llu,"
	    "\"image_size\":%llu,\"chunk_size\":%u,\"chunks\":%u,\"bytes_done\":%llu,"
	    "\"peers_connected\":%d,\"fetch_rate\":%.0f,\"serve_rate\":%.0f,"
	    "\"write_rate\":%.0f,\"dirty_bytes\":%llu,\"switchover_cost_s\":%.3f,"
	    "\"lag_bytes\":%llu,\"downtime_target_ms\":%u,\"auto_converge_rate\":%.0f",
	    st->seed ? "seed" : "fetch", st->have_root ? "true" : "false",
	    st->complete ? "true" : "false", st->final ? "true" : "false",
	    (unsigned long long)st->generation, (unsigned long long)st->image_size, st->chunk_size,
	    st->chunks_total, (unsigned long long)st->bytes_done, st->peers, st->fetch_rate,
	    st->serve_rate, st->write_rate, (unsigned long long)st->dirty_bytes, cost,
	    (unsigned long long)st->lag_bytes, st->downtime_target_ms, st->auto_rate);
	metrics_status_json(out, st, peers, npeers);
	migrate_status_json(mig, out);
	evbuffer_add_printf(out, "}\n");
}

/* `status`: the same for people. */
static void status_text(struct evbuffer *out, const struct swarm_status *st, double cost,
                        const struct swarm_peer_info *peers, int npeers, const struct migrate *mig)
{
	char b1[16], b2[16], b3[16];

	evbuffer_add_printf(out, "%s of a %s volume (generation %llu%s, %u chunks of %u KiB)\n",
	                    st->seed ? "seed" : "fetch", fmt_bytes(st->image_size, b1, sizeof(b1)),
	                    (unsigned long long)st->generation, st->final ? ", final" : "",
	                    st->chunks_total, st->chunk_size / 1024);
	if (!st->seed)
		evbuffer_add_printf(out, "progress: %s of %s%s, fetching at %s/s\n",
		                    fmt_bytes(st->bytes_done, b1, sizeof(b1)),
		                    fmt_bytes(st->image_size, b2, sizeof(b2)),
		                    st->complete ? " (complete)" : "",
		                    fmt_bytes((uint64_t)st->fetch_rate, b3, sizeof(b3)));
	evbuffer_add_printf(out, "peers: %d, serving at %s/s\n", st->peers,
	                    fmt_bytes((uint64_t)st->serve_rate, b1, sizeof(b1)));
	if (st->seed)
		evbuffer_add_printf(out,
		                    "dirty: %s (VM writing at %s/s); not yet at a destination: %s; "
		                    "switchover now would cost about %.1f s of transfer\n",
		                    fmt_bytes(st->dirty_bytes, b1, sizeof(b1)),
		                    fmt_bytes((uint64_t)st->write_rate, b2, sizeof(b2)),
		                    fmt_bytes(st->lag_bytes, b3, sizeof(b3)), cost);
	if (st->seed && st->downtime_target_ms > 0)
		evbuffer_add_printf(
		    out, "downtime target: %u ms%s%s%s\n", st->downtime_target_ms,
		    st->auto_rate > 0 ? "; auto-converge caps the VM's writes at " : "",
		    st->auto_rate > 0 ? fmt_bytes((uint64_t)st->auto_rate, b1, sizeof(b1)) : "",
		    st->auto_rate > 0 ? "/s" : "");
	metrics_status_text(out, st, peers, npeers);
	migrate_status_text(mig, out);
}

/* One command line from the control socket (ctl_handler); arg is the cmd_ctl_server. */
static void on_ctl(void *arg, const char *cmd, struct ctl_reply *r)
{
	struct cmd_ctl_server *cs = arg;
	struct evbuffer *out = ctl_reply_out(r);
	struct swarm_status st;
	struct swarm_peer_info *peers;
	int npeers;
	double cost;

	swarm_status(cs->sw, &st);
	if (strcmp(cmd, "freeze") == 0 || strcmp(cmd, "thaw") == 0) {
		on_freeze_thaw(cs->sw, &st, cmd, r);
		return;
	}
	if (strncmp(cmd, "migrate ", 8) == 0 || strcmp(cmd, "migrate") == 0) {
		on_migrate(cs, &st, cmd[7] ? cmd + 8 : "", r);
		return;
	}
	cost = st.dirty_bytes + st.lag_bytes > 0 ? (double)(st.dirty_bytes + st.lag_bytes) /
	                                               (st.serve_rate > 1 ? st.serve_rate : 1)
	                                         : 0;
	npeers = metrics_peers(cs->sw, &peers);
	if (strcmp(cmd, "status json") == 0)
		status_json(out, &st, cost, peers, npeers, cs->mig);
	else if (strcmp(cmd, "status") == 0)
		status_text(out, &st, cost, peers, npeers, cs->mig);
	else
		evbuffer_add_printf(out,
		                    "error: unknown command '%.60s' (try: status, status json, "
		                    "freeze, thaw, migrate URI)\n",
		                    cmd);
	free(peers);
}

/* The default control socket of this process: logged at start. Caller frees. */
static char *default_ctl_path(const char *role)
{
	const char *dir = getenv("XDG_RUNTIME_DIR");

	return xasprintf("%s/p2pvbd-%s-%d.ctl", dir && dir[0] ? dir : "/tmp", role, (int)getpid());
}

/* The control socket at path, or at the default of role; logs where. NULL on failure. */
static struct ctl *open_control_socket(struct event_base *base, struct cmd_ctl_server *cs,
                                       const char *path, const char *role)
{
	char *def = path ? NULL : default_ctl_path(role);
	const char *where = path ? path : def;
	struct ctl *c = ctl_new(base, where, on_ctl, cs);

	if (c != NULL)
		log_info("control socket %s (p2pvbd status %s)", where, where);
	free(def);
	return c;
}

/* SIGINT, SIGTERM, SIGHUP: peers told, the store committed, sockets removed. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	log_info("signal %d: shutting down", (int)sig);
	swarm_shutdown(arg);
}

int cmd_ctl_server_start(struct cmd_ctl_server *cs, struct event_base *base, struct swarm *sw,
                         const char *role, const char *ctl_path, const struct uri_peer *metrics_at)
{
	if (metrics_at != NULL &&
	    (cs->mx = metrics_new(base, sw, metrics_at->host, metrics_at->port)) == NULL)
		return -1;
	cs->sw = sw;
	cs->ctl = open_control_socket(base, cs, ctl_path, role);
	if (cs->ctl == NULL && ctl_path != NULL)
		return -1; /* asked for explicitly; the default is best effort */
	cli_signals_add(base, on_signal, sw, cs->sigs);
	return 0;
}

void cmd_ctl_server_stop(struct cmd_ctl_server *cs)
{
	ctl_free(cs->ctl);
	metrics_free(cs->mx);
	cli_signals_free(cs->sigs);
}
