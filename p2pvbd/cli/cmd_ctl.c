/* SPDX-License-Identifier: ISC */
/*
 * cmd_ctl: controlling a running seed or fetch. The clients, `p2pvbd status`
 * and `p2pvbd ctl`, and the server side: the control socket's commands
 * (status, status json, freeze, thaw; see ctl.h), the freeze when the VM's
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
#include "parse.h"
#include "swarm.h"
#include "uri.h"
#include "util.h"

/* ctl --timeout: the default and the longest wait for an answer, in seconds. */
#define CTL_WAIT_DEFAULT_S 60
#define CTL_WAIT_MAX_S     86400

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

static int cmd_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t timeout_s = CTL_WAIT_DEFAULT_S;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			if (parse_duration(optarg, 1, CTL_WAIT_MAX_S, &timeout_s) != 0)
				return cli_usage_error("p2pvbd ctl", "bad --timeout %s", optarg);
			break;
		case 'h':
			fputs(usage_ctl, stdout);
			return 0;
		default:
			return cli_usage_error("p2pvbd ctl", "%s", cli_bad_option(argv));
		}
	}
	if (optind + 2 != argc)
		return cli_usage_error("p2pvbd ctl",
		                       "ctl needs the control socket and one command");
	if (strcmp(argv[optind + 1], "freeze") != 0 && strcmp(argv[optind + 1], "thaw") != 0 &&
	    strcmp(argv[optind + 1], "status") != 0)
		return cli_usage_error("p2pvbd ctl", "unknown command '%s' (freeze, thaw, status)",
		                       argv[optind + 1]);
	log_init("p2pvbd ctl", LOG_LEVEL_INFO);
	return ctl_request(argv[optind], argv[optind + 1], (int)timeout_s) == 0 ? 0 : 1;
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
    .summary = "tell a running seed: freeze (switchover), thaw (roll back)",
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

/* `status json`: one JSON object. cost: the switchover's estimated seconds. */
static void status_json(struct evbuffer *out, const struct swarm_status *st, double cost,
                        const struct swarm_peer_info *peers, int npeers)
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
	evbuffer_add_printf(out, "}\n");
}

/* `status`: the same for people. */
static void status_text(struct evbuffer *out, const struct swarm_status *st, double cost,
                        const struct swarm_peer_info *peers, int npeers)
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
}

/* One command line from the control socket (ctl_handler); arg is the swarm. */
static void on_ctl(void *arg, const char *cmd, struct ctl_reply *r)
{
	struct evbuffer *out = ctl_reply_out(r);
	struct swarm_status st;
	struct swarm_peer_info *peers;
	int npeers;
	double cost;

	swarm_status(arg, &st);
	if (strcmp(cmd, "freeze") == 0 || strcmp(cmd, "thaw") == 0) {
		on_freeze_thaw(arg, &st, cmd, r);
		return;
	}
	cost = st.dirty_bytes + st.lag_bytes > 0 ? (double)(st.dirty_bytes + st.lag_bytes) /
	                                               (st.serve_rate > 1 ? st.serve_rate : 1)
	                                         : 0;
	npeers = metrics_peers(arg, &peers);
	if (strcmp(cmd, "status json") == 0)
		status_json(out, &st, cost, peers, npeers);
	else if (strcmp(cmd, "status") == 0)
		status_text(out, &st, cost, peers, npeers);
	else
		evbuffer_add_printf(
		    out,
		    "error: unknown command '%.60s' (try: status, status json, freeze, thaw)\n",
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
static struct ctl *open_control_socket(struct event_base *base, struct swarm *sw, const char *path,
                                       const char *role)
{
	char *def = path ? NULL : default_ctl_path(role);
	const char *where = path ? path : def;
	struct ctl *c = ctl_new(base, where, on_ctl, sw);

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
	cs->ctl = open_control_socket(base, sw, ctl_path, role);
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
