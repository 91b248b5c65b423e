/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of qmp, the QMP client: against a scripted fake QEMU on a
 * socketpair-backed unix socket, a command gets its own reply (events and a
 * stale reply before it are set aside), errors carry QEMU's class and
 * description, a silent QEMU times out, a closed one fails, and malformed
 * lines (not JSON, not an object, neither reply nor event, an overlong
 * line) are refused.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qmp.h"
#include "tdir.h"

static char sock_path[160];
static int lfd = -1;

/* The fake QEMU: accepts once, sends the greeting, then for each line it reads sends the next
 * scripted answer with "ID" replaced by the request's id (a NULL answer: close). */
struct fake {
	const char *answers[8];
	int n;
};

static void *fake_run(void *arg)
{
	struct fake *f = arg;
	int c = accept(lfd, NULL, NULL);
	char buf[4096];
	size_t len = 0;

	cr_assert(c >= 0);
	const char *greet = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";
	cr_assert(write(c, greet, strlen(greet)) == (ssize_t)strlen(greet));
	for (int i = 0; i < f->n; i++) {
		char *nl;
		while ((nl = memchr(buf, '\n', len)) == NULL) {
			ssize_t r = read(c, buf + len, sizeof(buf) - len);
			if (r <= 0)
				goto out;
			len += (size_t)r;
		}
		char id[64] = "";
		const char *p = strstr(buf, "\"id\":\"");
		if (p != NULL && p < nl)
			sscanf(p + 6, "%63[^\"]", id);
		memmove(buf, nl + 1, len - (size_t)(nl + 1 - buf));
		len -= (size_t)(nl + 1 - buf);
		if (f->answers[i] == NULL)
			break;
		char out[4096];
		const char *a = f->answers[i], *at;
		size_t o = 0;
		while ((at = strstr(a, "ID")) != NULL) {
			o += (size_t)snprintf(out + o, sizeof(out) - o, "%.*s%s", (int)(at - a), a,
			                      id);
			a = at + 2;
		}
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s", a);
		if (strcmp(a, "SLEEP") == 0 || strstr(f->answers[i], "SLEEP") != NULL) {
			usleep(400000);
			continue;
		}
		cr_assert(write(c, out, o) == (ssize_t)o);
	}
out:
	close(c);
	return NULL;
}

static pthread_t fake_thread;
static struct fake fake;

static void start_fake(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	snprintf(sock_path, sizeof(sock_path), "%s/qmp.sock", tdir_make("qmp"));
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert(lfd >= 0);
	cr_assert(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert(listen(lfd, 1) == 0);
	cr_assert(pthread_create(&fake_thread, NULL, fake_run, &fake) == 0);
}

static void stop_fake(void)
{
	pthread_join(fake_thread, NULL);
	close(lfd);
	tdir_remove();
}

#define CAPS_OK "{\"return\": {}, \"id\": \"ID\"}\n"

Test(qmp, reply_after_events_and_stale_reply)
{
	char err[256];
	json_t *ret;

	fake =
	    (struct fake){{CAPS_OK,
	                   "{\"event\": \"BLOCK_JOB_READY\", \"data\": {\"device\": \"j\"}}\n"
	                   "{\"return\": 7, \"id\": \"old\"}\n"
	                   "{\"return\": {\"status\": \"running\"}, \"id\": \"ID\"}\n",
	                   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such job\"}, "
	                   "\"id\": \"ID\"}\n"},
	                  3};
	start_fake();
	struct qmp *q = qmp_open(sock_path, 5000, err, sizeof(err));
	cr_assert(q != NULL, "%s", err);
	cr_assert(qmp_execf(q, &ret, 5000, err, sizeof(err), "query-status", NULL) == 0, "%s", err);
	cr_assert_str_eq(json_string_value(json_object_get(ret, "status")), "running");
	json_decref(ret);
	cr_assert(qmp_execf(q, NULL, 5000, err, sizeof(err), "block-job-cancel", "{s:s}", "device",
	                    "j") == -1);
	cr_assert(strstr(err, "GenericError: no such job") != NULL, "%s", err);
	json_t *ev;
	cr_assert(qmp_wait_event(q, "BLOCK_JOB_READY", 100, &ev, err, sizeof(err)) == 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(ev, "data"), "device")),
	                 "j");
	json_decref(ev);
	cr_assert(qmp_wait_event(q, "BLOCK_JOB_READY", 50, NULL, err, sizeof(err)) != 0);
	qmp_close(q);
	stop_fake();
}

Test(qmp, timeout_and_close)
{
	char err[256];

	fake = (struct fake){{CAPS_OK, "SLEEP", NULL}, 3};
	start_fake();
	struct qmp *q = qmp_open(sock_path, 5000, err, sizeof(err));
	cr_assert(q != NULL, "%s", err);
	cr_assert(qmp_execf(q, NULL, 100, err, sizeof(err), "stop", NULL) == -1);
	cr_assert(strstr(err, "in time") != NULL, "%s", err);
	cr_assert(!qmp_broken(q), "a timeout alone does not break the connection");
	cr_assert(qmp_execf(q, NULL, 5000, err, sizeof(err), "cont", NULL) == -1);
	cr_assert(strstr(err, "closed") != NULL, "%s", err);
	cr_assert(qmp_broken(q));
	/* Once broken, every call fails at once. */
	cr_assert(qmp_execf(q, NULL, 5000, err, sizeof(err), "cont", NULL) == -1);
	cr_assert(strstr(err, "closed") != NULL, "%s", err);
	qmp_close(q);
	stop_fake();
}

Test(qmp, open_and_bad_path)
{
	char err[256];

	fake = (struct fake){{CAPS_OK}, 1};
	start_fake();
	struct qmp *q = qmp_open(sock_path, 5000, err, sizeof(err));
	cr_assert(q != NULL, "%s", err);
	qmp_close(q);
	stop_fake();
	cr_assert(qmp_open("/nonexistent/qmp.sock", 100, err, sizeof(err)) == NULL);
	cr_assert(strstr(err, "cannot connect") != NULL, "%s", err);
}

Test(qmp, malformed_lines)
{
	char err[256];
	json_t *o;
	static const char *bad[] = {"",
	                            "{",
	                            "[1,2]",
	                            "\"str\"",
	                            "{\"foo\": 1}",
	                            "{\"error\": 5}",
	                            "{\"event\": 5}",
	                            "{\"return\": 1, \"return\": 2}",
	                            "{\"return\": 1} trailing"};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert(qmp_parse_line(bad[i], strlen(bad[i]), &o, err, sizeof(err)) == -1, "%s",
		          bad[i]);
		cr_assert(o == NULL);
	}
	cr_assert(qmp_parse_line("{\"return\": {}}", 14, &o, err, sizeof(err)) == 0);
	json_decref(o);
	cr_assert(qmp_parse_line("{\"event\": \"STOP\"}", 17, &o, err, sizeof(err)) == 1);
	json_decref(o);
}
