/* SPDX-License-Identifier: ISC */
/*
 * qmp: a blocking QMP client (qmp.h). QEMU sends one JSON object per line:
 * the greeting, then replies ("return" or "error", in the order of the
 * commands) and events ("event") at any time. JSON is jansson's.
 */
#include "qmp.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

struct qmp {
	int fd;
	char *buf; /* bytes read and not yet consumed */
	size_t len, cap;
	json_t *events[QMP_EVENTS_MAX]; /* queued, oldest first */
	unsigned nevents;
	unsigned long long next_id;
	int broken; /* the connection closed or failed: QEMU exited or dropped us */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int qmp_parse_line(const char *line, size_t len, json_t **obj, char *err, size_t errlen)
{
	json_error_t je;
	json_t *o;

	*obj = NULL;
	o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL) {
		snprintf(err, errlen, "not JSON: %s", je.text);
		return -1;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		snprintf(err, errlen, "not a JSON object");
		return -1;
	}
	if (json_is_string(json_object_get(o, "event"))) {
		*obj = o;
		return 1;
	}
	if (json_object_get(o, "return") != NULL) {
		*obj = o;
		return 0;
	}
	json_t *e = json_object_get(o, "error");
	if (json_is_object(e)) {
		*obj = o;
		return 0;
	}
	json_decref(o);
	snprintf(err, errlen, "neither a reply nor an event");
	return -1;
}

/* Reads one line into *line (NUL-terminated, without its newline) by deadline; 0, or -1. */
static int read_line(struct qmp *q, long long deadline, char **line, char *err, size_t errlen)
{
	for (;;) {
		char *nl = q->len > 0 ? memchr(q->buf, '\n', q->len) : NULL;

		if (nl != NULL) {
			size_t n = (size_t)(nl - q->buf);

			*line = xmalloc(n + 1);
			memcpy(*line, q->buf, n);
			(*line)[n] = '\0';
			memmove(q->buf, nl + 1, q->len - n - 1);
			q->len -= n + 1;
			return 0;
		}
		if (q->len >= QMP_LINE_MAX) {
			snprintf(err, errlen, "QMP line longer than %u bytes", QMP_LINE_MAX);
			return -1;
		}
		long long left = deadline - now_ms();
		if (left <= 0) {
			snprintf(err, errlen, "QEMU did not answer in time");
			return -1;
		}
		struct pollfd pfd = {.fd = q->fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
		if (r < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (r <= 0)
			continue;
		if (q->cap - q->len < 65536) {
			q->cap = q->cap ? q->cap * 2 : 65536;
			q->buf = xrealloc(q->buf, q->cap);
		}
		ssize_t got = read(q->fd, q->buf + q->len, q->cap - q->len);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0) {
			q->broken = 1;
			snprintf(err, errlen, "QMP connection closed (%s)",
			         got == 0 ? "QEMU exited or dropped us" : strerror(errno));
			return -1;
		}
		q->len += (size_t)got;
	}
}

static void queue_event(struct qmp *q, json_t *ev)
{
	if (q->nevents == QMP_EVENTS_MAX) {
		json_decref(q->events[0]);
		memmove(q->events, q->events + 1, (QMP_EVENTS_MAX - 1) * sizeof(q->events[0]));
		q->nevents--;
	}
	q->events[q->nevents++] = ev;
}

/* Reads messages until a reply (0, *reply) or a failure (-1); events are queued. */
static int read_reply(struct qmp *q, long long deadline, json_t **reply, char *err, size_t errlen)
{
	for (;;) {
		char *line;
		json_t *o;

		if (read_line(q, deadline, &line, err, errlen) != 0)
			return -1;
		int kind = qmp_parse_line(line, strlen(line), &o, err, errlen);
		free(line);
		if (kind < 0)
			return -1;
		if (kind == 1) {
			queue_event(q, o);
			continue;
		}
		*reply = o;
		return 0;
	}
}

static int write_all(struct qmp *q, const char *p, size_t n, char *err, size_t errlen)
{
	while (n > 0) {
		ssize_t w = send(q->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			if (errno == EPIPE || errno == ECONNRESET)
				q->broken = 1;
			snprintf(err, errlen, "QMP write: %s", strerror(errno));
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int qmp_exec(struct qmp *q, const char *cmd, json_t *args, json_t **ret, int timeout_ms, char *err,
             size_t errlen)
{
	char id[32];
	json_t *req, *reply = NULL;
	int rc = -1;

	if (ret != NULL)
		*ret = NULL;
	snprintf(id, sizeof(id), "p2pvbd-%llu", ++q->next_id);
	req = json_pack("{s:s, s:s}", "execute", cmd, "id", id);
	if (req == NULL) {
		json_decref(args);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (args != NULL)
		json_object_set_new(req, "arguments", args);
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (text == NULL) {
		snprintf(err, errlen, "%s: cannot encode the arguments", cmd);
		return -1;
	}
	size_t n = strlen(text);
	text = xrealloc(text, n + 2);
	memcpy(text + n, "\n", 2);
	if (q->broken) {
		free(text);
		snprintf(err, errlen, "%s: the QMP connection is closed (QEMU exited?)", cmd);
		return -1;
	}
	int w = write_all(q, text, n + 1, err, errlen);
	free(text);
	if (w != 0)
		return -1;

	long long deadline = now_ms() + timeout_ms;
	for (;;) {
		if (read_reply(q, deadline, &reply, err, errlen) != 0)
			return -1;
		/* A reply to an earlier command that timed out: drop it. */
		const char *rid = json_string_value(json_object_get(reply, "id"));
		if (rid != NULL && strcmp(rid, id) == 0)
			break;
		json_decref(reply);
	}
	json_t *e = json_object_get(reply, "error");
	if (e != NULL) {
		const char *cls = json_string_value(json_object_get(e, "class"));
		const char *desc = json_string_value(json_object_get(e, "desc"));
		snprintf(err, errlen, "%s: %s: %s", cmd, cls ? cls : "error",
		         desc ? desc : "(no description)");
	} else {
		if (ret != NULL)
			*ret = json_incref(json_object_get(reply, "return"));
		rc = 0;
	}
	json_decref(reply);
	return rc;
}

int qmp_execf(struct qmp *q, json_t **ret, int timeout_ms, char *err, size_t errlen,
              const char *cmd, const char *fmt, ...)
{
	json_t *args = NULL;

	if (fmt != NULL) {
		json_error_t je;
		va_list ap;

		va_start(ap, fmt);
		args = json_vpack_ex(&je, 0, fmt, ap);
		va_end(ap);
		if (args == NULL) {
			snprintf(err, errlen, "%s: bad arguments: %s", cmd, je.text);
			return -1;
		}
	}
	return qmp_exec(q, cmd, args, ret, timeout_ms, err, errlen);
}

int qmp_wait_event(struct qmp *q, const char *name, int timeout_ms, json_t **ev, char *err,
                   size_t errlen)
{
	long long deadline = now_ms() + timeout_ms;

	if (ev != NULL)
		*ev = NULL;
	for (;;) {
		for (unsigned i = 0; i < q->nevents; i++) {
			json_t *o = q->events[i];
			const char *n = json_string_value(json_object_get(o, "event"));

			if (name != NULL && (n == NULL || strcmp(n, name) != 0))
				continue;
			memmove(q->events + i, q->events + i + 1,
			        (q->nevents - i - 1) * sizeof(q->events[0]));
			q->nevents--;
			if (ev != NULL)
				*ev = o;
			else
				json_decref(o);
			return 0;
		}
		if (now_ms() >= deadline)
			return 1;
		char *line;
		json_t *o;
		if (read_line(q, deadline, &line, err, errlen) != 0)
			return now_ms() >= deadline ? 1 : -1;
		int kind = qmp_parse_line(line, strlen(line), &o, err, errlen);
		free(line);
		if (kind < 0)
			return -1;
		if (kind == 1)
			queue_event(q, o);
		else
			json_decref(o); /* a late reply to a command that timed out */
	}
}

struct qmp *qmp_open(const char *path, int timeout_ms, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct qmp *q;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "QMP socket path too long (%zu bytes, at most %zu): %s",
		         strlen(path), sizeof(sa.sun_path) - 1, path);
		return NULL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return NULL;
	}
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		snprintf(err, errlen,
		         "cannot connect to QMP socket %s: %s (is QEMU running with "
		         "-qmp unix:%s,server=on,wait=off, and no other client on it?)",
		         path, strerror(errno), path);
		close(fd);
		return NULL;
	}
	q = xcalloc(1, sizeof(*q));
	q->fd = fd;

	long long deadline = now_ms() + timeout_ms;
	char *line;
	json_t *greeting = NULL;
	json_error_t je;
	if (read_line(q, deadline, &line, err, errlen) != 0)
		goto fail;
	greeting = json_loads(line, 0, &je);
	free(line);
	if (!json_is_object(greeting) || json_object_get(greeting, "QMP") == NULL) {
		snprintf(err, errlen, "%s: no QMP greeting (is this a QMP socket, not an HMP one?)",
		         path);
		goto fail;
	}
	json_decref(greeting);
	greeting = NULL;
	int left = (int)(deadline - now_ms());
	if (qmp_exec(q, "qmp_capabilities", NULL, NULL, left > 0 ? left : 1, err, errlen) != 0)
		goto fail;
	return q;
fail:
	json_decref(greeting);
	qmp_close(q);
	return NULL;
}

int qmp_broken(const struct qmp *q)
{
	return q->broken;
}

void qmp_close(struct qmp *q)
{
	if (q == NULL)
		return;
	close(q->fd);
	for (unsigned i = 0; i < q->nevents; i++)
		json_decref(q->events[i]);
	free(q->buf);
	free(q);
}
