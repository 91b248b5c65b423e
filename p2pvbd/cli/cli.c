/* SPDX-License-Identifier: ISC */
/*
 * cli: the command-line helpers both programs share (cli.h): usage errors,
 * the checks before work, atomic file writes and the stopping signals.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/http.h>

#include "cli.h"
#include "parse.h"
#include "sockpath.h"
#include "uri.h"
#include "util.h"

int cli_usage_error(const char *who, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", who);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nsee '%s --help'\n", who);
	return CLI_EXIT_USAGE;
}

int cli_parse_listen(const char *spec, struct uri_peer *p)
{
	return parse_hostport(spec, 1, p->host, sizeof(p->host), &p->port);
}

const char *cli_bad_option(char **argv)
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

int cli_check_bind(const char *host, uint16_t port, const char *what)
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

int cli_check_socket_path(const char *path, const char *what)
{
	/* Claimed (nothing there, or a stale socket removed), then its directory must take it. */
	return sockpath_claim(path, what) != 0 || cli_check_writable(path, what) != 0 ? -1 : 0;
}

int cli_check_export(const char *spec)
{
	char host[256];
	uint16_t port;

	if (strncmp(spec, "unix:", 5) == 0)
		return spec[5] == '\0' ? -1 : cli_check_socket_path(spec + 5, "export");
	if (parse_hostport(spec, 1, host, sizeof(host), &port) != 0) {
		log_error("export %s: expected unix:PATH or HOST:PORT", spec);
		return -1;
	}
	return cli_check_bind(host, port, "export");
}

int cli_check_resolves(const char *host, const char *what)
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

int cli_check_tracker(const char *url)
{
	struct evhttp_uri *u = evhttp_uri_parse(url);
	const char *scheme = u ? evhttp_uri_get_scheme(u) : NULL;
	const char *host = u ? evhttp_uri_get_host(u) : NULL;
	int rc = -1;

	if (scheme == NULL || strcmp(scheme, "http") != 0 || host == NULL || host[0] == '\0')
		log_error("tracker %s: expected http://HOST[:PORT]/announce", url);
	else
		rc = cli_check_resolves(host, url);
	if (u != NULL)
		evhttp_uri_free(u);
	return rc;
}

int cli_check_writable(const char *path, const char *what)
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

/* ---- files and signals ------------------------------------------------ */

int cli_write_file_atomic(const char *path, const char *data)
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

void cli_signals_add(struct event_base *base, event_callback_fn fn, void *arg,
                     struct event *ev[CLI_NSIGNALS])
{
	static const int sigs[CLI_NSIGNALS] = {SIGINT, SIGTERM, SIGHUP};

	for (int i = 0; i < CLI_NSIGNALS; i++) {
		ev[i] = evsignal_new(base, sigs[i], fn, arg);
		if (ev[i] == NULL)
			fatal("event_new failed");
		event_add(ev[i], NULL);
	}
}

void cli_signals_free(struct event *ev[CLI_NSIGNALS])
{
	for (int i = 0; i < CLI_NSIGNALS; i++)
		if (ev[i] != NULL)
			event_free(ev[i]);
}

char *cli_sidecar(const char *out, const char *state_dir)
{
	struct stat st;
	char *copy, *r;
	const char *dir = state_dir;

	if (dir == NULL && stat(out, &st) == 0 && S_ISBLK(st.st_mode))
		dir = CLI_BLOCKDEV_STATE_DIR;
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
