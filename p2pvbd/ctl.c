/* SPDX-License-Identifier: ISC */
/*
 * ctl: the control socket. See ctl.h.
 */
#include "ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "sockpath.h"
#include "util.h"

struct ctl {
	struct evconnlistener *listener;
	struct sockpath sock;
	ctl_handler fn;
	void *arg;
};

/*
 * A client being answered. later: the handler answers after it returned.
 * in_handler, ended: ctl_reply_end was called from inside the handler (an
 * answer that turned out to be ready at once); on_client_read finishes it.
 */
struct ctl_reply {
	struct bufferevent *bev;
	int later;
	int in_handler;
	int ended;
};

struct evbuffer *ctl_reply_out(struct ctl_reply *r)
{
	return bufferevent_get_output(r->bev);
}

void ctl_reply_later(struct ctl_reply *r)
{
	r->later = 1;
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
	(void)arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	(void)arg;
	bufferevent_free(bev); /* EOF before a line, error or timeout */
}

/* Send what was answered, then close. */
static void reply_finish(struct bufferevent *bev)
{
	bufferevent_setcb(bev, NULL, on_client_write, on_client_event, NULL);
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		bufferevent_free(bev);
}

void ctl_reply_end(struct ctl_reply *r)
{
	struct timeval tv = {CTL_TIMEOUT_S, 0};

	if (r->in_handler) {
		r->ended = 1; /* on_client_read still uses r: it sends and frees */
		return;
	}
	bufferevent_set_timeouts(r->bev, NULL, &tv);
	bufferevent_enable(r->bev, EV_WRITE);
	reply_finish(r->bev);
	free(r);
}

static void on_client_read(struct bufferevent *bev, void *arg)
{
	struct ctl *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t n;
	char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);

	if (line == NULL) {
		if (evbuffer_get_length(in) > CTL_MAX_LINE)
			bufferevent_free(bev);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	if (n > CTL_MAX_LINE) {
		evbuffer_add_printf(bufferevent_get_output(bev), "error: command too long\n");
	} else {
		struct ctl_reply *r = xcalloc(1, sizeof(*r));

		r->bev = bev;
		r->in_handler = 1;
		c->fn(c->arg, line, r);
		r->in_handler = 0;
		if (r->later && !r->ended) {
			/* No timeout while the answer is being worked out; a client that
			 * leaves meanwhile is noticed when the answer is written. */
			free(line);
			bufferevent_set_timeouts(bev, NULL, NULL);
			bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
			return;
		}
		free(r);
	}
	free(line);
	reply_finish(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct ctl *c = arg;
	struct bufferevent *bev =
	    bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
	struct timeval tv = {CTL_TIMEOUT_S, 0};

	(void)sa;
	(void)salen;
	if (bev == NULL) {
		evutil_closesocket(fd);
		return;
	}
	bufferevent_setcb(bev, on_client_read, NULL, on_client_event, c);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ);
}

struct ctl *ctl_new(struct event_base *base, const char *path, ctl_handler fn, void *arg)
{
	struct ctl *c;
	struct sockaddr_un su;
	mode_t old_mask;

	memset(&su, 0, sizeof(su));
	if (path[0] == '\0' || strlen(path) >= sizeof(su.sun_path)) {
		log_error("control socket %s: bad path", path);
		return NULL;
	}
	su.sun_family = AF_UNIX;
	memcpy(su.sun_path, path, strlen(path));
	if (sockpath_claim(path, "control socket") != 0)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->fn = fn;
	c->arg = arg;
	/* Only its owner may control the process: no window with a wider mode. */
	old_mask = umask(077);
	c->listener = evconnlistener_new_bind(base, on_accept, c,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 8,
	                                      (struct sockaddr *)&su, sizeof(su));
	umask(old_mask);
	if (c->listener == NULL) {
		log_error("control socket %s: %s", path, strerror(errno));
		free(c);
		return NULL;
	}
	if (sockpath_made(&c->sock, path) != 0) {
		evconnlistener_free(c->listener);
		free(c);
		return NULL;
	}
	return c;
}

void ctl_free(struct ctl *c)
{
	if (c == NULL)
		return;
	evconnlistener_free(c->listener);
	sockpath_release(&c->sock);
	free(c);
}

int ctl_request(const char *path, const char *cmd, int timeout_s)
{
	struct sockaddr_un su;
	struct timeval tv = {timeout_s, 0};
	char buf[4096];
	int fd, rc = 0, first = 1;
	size_t len = strlen(cmd);
	ssize_t n;

	memset(&su, 0, sizeof(su));
	if (strlen(path) >= sizeof(su.sun_path)) {
		log_error("%s: path too long for a Unix socket", path);
		return -1;
	}
	su.sun_family = AF_UNIX;
	memcpy(su.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&su, sizeof(su)) != 0) {
		log_error(
		    "cannot connect to %s: %s (is the seed or fetch running, with this --ctl?)",
		    path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (write(fd, cmd, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
		log_error("%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (first && n >= 6 && memcmp(buf, "error:", 6) == 0)
			rc = -1;
		first = 0;
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
			rc = -1;
			break;
		}
	}
	if (n < 0) {
		log_error("%s: %s", path, errno == EAGAIN ? "no answer in time" : strerror(errno));
		rc = -1;
	}
	close(fd);
	return rc;
}
