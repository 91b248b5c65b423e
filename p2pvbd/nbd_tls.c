/* SPDX-License-Identifier: ISC */
/*
 * nbd_tls: see nbd_tls.h.
 *
 * How TLS sits in the event loop. libevent's own TLS bufferevents speak
 * OpenSSL or mbedTLS, not GnuTLS, so the session is glued in by hand, in
 * the two directions the NBD connection already has:
 * - input: the connection reads the socket with a netio reader (big recv()
 *   gulps, netio.h), not with its bufferevent. GnuTLS's pull function takes
 *   ciphertext from that reader's buffer and nbd_tls_read() decrypts records
 *   into a plaintext buffer, bounded like the plain input is; no socket call
 *   is made by GnuTLS, so nothing blocks.
 * - output: a libevent filter bufferevent stacked on the socket's. The
 *   connection writes plaintext to the filter exactly as it wrote to the
 *   socket (same write callback, same output-length back-pressure); the
 *   filter's output function encrypts into the socket bufferevent's output
 *   through GnuTLS's push function, only while that output is under
 *   TLS_RAW_HIGH, and libevent calls it again as the socket drains. Writing
 *   this scheduling by hand would repeat what the filter already does.
 * Handshake messages, which GnuTLS writes on its own, go through the same
 * push function. Push never fails (it appends to an evbuffer), so
 * GNUTLS_E_AGAIN only ever means "pull found no more input".
 */
#include "nbd_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "pskfile.h"
#include "util.h"
#include "vcrypto.h"

/* A PSK file is a short list; a bigger one is a mistake (the wrong file). */
#define TLS_PSK_FILE_MAX (1024 * 1024)
/* Ciphertext queued on the socket before the filter stops encrypting: a few
 * socket buffers' worth keeps the link busy; the rest waits as plaintext. */
#define TLS_RAW_HIGH (4u * 1024u * 1024u)
#define TLS_RAW_LOW  (1u * 1024u * 1024u)
/* Plaintext per record (TLS's maximum): one gnutls_record_send each. */
#define TLS_RECORD_MAX 16384
/* Non-fatal GnuTLS results (warning alerts) handled in one call, at most. */
#define TLS_RETRIES_MAX 64
/*
 * Cipher suites: GnuTLS's defaults with the PSK key exchanges added, as QEMU
 * does: only those with (EC)DHE, for forward secrecy (plain PSK, which has
 * none, is left out), and never TLS 1.0 or 1.1 (the NBD spec: 1.2 at least,
 * older only by configuration).
 */
#define TLS_PRIORITY_PSK  "NORMAL:+ECDHE-PSK:+DHE-PSK:-VERS-TLS1.1:-VERS-TLS1.0"
#define TLS_PRIORITY_X509 "NORMAL:-VERS-TLS1.1:-VERS-TLS1.0"

struct nbd_tls_creds {
	int psk; /* else X.509 */
	gnutls_psk_server_credentials_t pskc;
	gnutls_certificate_credentials_t x509;
	gnutls_priority_t prio;
	struct pskfile keys; /* PSK: wiped at free */
	int verify_peer;
};

struct nbd_tls {
	const struct nbd_tls_creds *cr;
	gnutls_session_t sess;
	struct bufferevent *raw; /* the socket's (ciphertext out); owned by bev */
	struct bufferevent *bev; /* the filter (plaintext out); owned by the connection */
	struct evbuffer *raw_in; /* ciphertext in (borrowed) */
	struct evbuffer *in;     /* plaintext in (owned) */
	int established, bye_sent, failed;
	char name[64];
	char err[200];
	void (*drained)(void *arg);
	void *drained_arg;
	struct evbuffer_cb_entry *drain_cb;
};

/* ---- Credentials -------------------------------------------------------- */

/* Keys and key files readable by others deserve a word (QEMU and nbdkit say nothing). */
static void warn_if_shared(const char *path, const char *what)
{
	struct stat st;

	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("%s %s can be read by other users (mode %03o): chmod 600 it", what, path,
		         (unsigned)(st.st_mode & 0777));
}

/* The whole of a small file into a NUL-terminated buffer (owned by the caller); 0 or -1. */
static int read_small_file(const char *path, size_t max, char **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	ssize_t n;

	if (fd < 0 || fstat(fd, &st) != 0) {
		log_error("--tls-psk %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		log_error("--tls-psk %s: not a regular file of at most %zu bytes", path, max);
		close(fd);
		return -1;
	}
	*buf = xmalloc((size_t)st.st_size + 1);
	n = read_at(fd, *buf, (size_t)st.st_size, 0);
	close(fd);
	if (n < 0) {
		log_error("--tls-psk %s: %s", path, strerror(errno));
		free(*buf);
		return -1;
	}
	*len = (size_t)n;
	(*buf)[n] = '\0';
	return 0;
}

/* Printable ASCII of a client's username, for the log (it is the client's text). */
static void printable(const char *in, char *out, size_t outlen)
{
	size_t j = 0;

	for (size_t i = 0; in != NULL && in[i] != '\0' && j + 1 < outlen; i++)
		out[j++] = in[i] >= 0x20 && in[i] < 0x7f ? in[i] : '?';
	out[j] = '\0';
}

/* GnuTLS asks for the key of a PSK username: from the file read at start. */
static int psk_lookup(gnutls_session_t sess, const char *username, gnutls_datum_t *key)
{
	struct nbd_tls *t = gnutls_session_get_ptr(sess);
	const struct pskfile_entry *e = pskfile_find(&t->cr->keys, username);
	char user[PSKFILE_NAME_MAX + 1];

	if (e == NULL) {
		printable(username, user, sizeof(user));
		log_warn("nbd %s: TLS: unknown PSK username \"%s\" (not in --tls-psk)", t->name,
		         user);
		return -1;
	}
	key->data = gnutls_malloc(e->keylen);
	if (key->data == NULL)
		return -1;
	memcpy(key->data, e->key, e->keylen);
	key->size = (unsigned)e->keylen;
	return 0;
}

static int load_psk(struct nbd_tls_creds *cr, const char *path)
{
	char *text, err[200];
	size_t len;
	int rc;

	if (read_small_file(path, TLS_PSK_FILE_MAX, &text, &len) != 0)
		return -1;
	rc = pskfile_parse(text, len, &cr->keys, err, sizeof(err));
	vcrypto_wipe(text, len);
	free(text);
	if (rc != 0) {
		log_error("--tls-psk %s: %s (each line USERNAME:HEXKEY, as psktool -u NAME -p FILE "
		          "writes)",
		          path, err);
		return -1;
	}
	warn_if_shared(path, "--tls-psk");
	if (gnutls_psk_allocate_server_credentials(&cr->pskc) != 0)
		fatal("out of memory");
	gnutls_psk_set_server_credentials_function(cr->pskc, psk_lookup);
	gnutls_psk_set_server_known_dh_params(cr->pskc, GNUTLS_SEC_PARAM_MEDIUM);
	cr->psk = 1;
	return 0;
}

/* dir/name exists (else an error naming what the directory must hold); 0 or -1. */
static int creds_file(const char *dir, const char *name, char **path)
{
	*path = xasprintf("%s/%s", dir, name);
	if (access(*path, R_OK) == 0)
		return 0;
	log_error("--tls-creds %s: %s: %s (the directory holds server-cert.pem, server-key.pem "
	          "and ca-cert.pem, as QEMU's tls-creds-x509 endpoint=server)",
	          dir, name, strerror(errno));
	free(*path);
	*path = NULL;
	return -1;
}

static int load_x509(struct nbd_tls_creds *cr, const char *dir, int verify_peer)
{
	char *cert = NULL, *key = NULL, *ca = NULL;
	int rc = -1, r;

	if (gnutls_certificate_allocate_credentials(&cr->x509) != 0)
		fatal("out of memory");
	if (creds_file(dir, "server-cert.pem", &cert) != 0 ||
	    creds_file(dir, "server-key.pem", &key) != 0)
		goto out;
	r = gnutls_certificate_set_x509_key_file(cr->x509, cert, key, GNUTLS_X509_FMT_PEM);
	if (r < 0) {
		log_error("--tls-creds %s: server-cert.pem and server-key.pem: %s", dir,
		          gnutls_strerror(r));
		goto out;
	}
	warn_if_shared(key, "--tls-creds key");
	/* The CA: needed only to check clients' certificates (--tls-verify-peer). */
	if (verify_peer) {
		if (creds_file(dir, "ca-cert.pem", &ca) != 0)
			goto out;
		r = gnutls_certificate_set_x509_trust_file(cr->x509, ca, GNUTLS_X509_FMT_PEM);
		if (r <= 0) {
			log_error("--tls-creds %s: ca-cert.pem: %s", dir,
			          r < 0 ? gnutls_strerror(r) : "no certificate in it");
			goto out;
		}
	}
	gnutls_certificate_set_known_dh_params(cr->x509, GNUTLS_SEC_PARAM_MEDIUM);
	cr->verify_peer = verify_peer;
	rc = 0;
out:
	free(cert);
	free(key);
	free(ca);
	return rc;
}

struct nbd_tls_creds *nbd_tls_creds_load(const struct nbd_tls_opts *o)
{
	struct nbd_tls_creds *cr = xcalloc(1, sizeof(*cr));
	const char *errpos = NULL;
	int r;

	if ((o->psk_file != NULL ? load_psk(cr, o->psk_file)
	                         : load_x509(cr, o->creds_dir, o->verify_peer)) != 0)
		goto fail;
	r = gnutls_priority_init(&cr->prio, cr->psk ? TLS_PRIORITY_PSK : TLS_PRIORITY_X509,
	                         &errpos);
	if (r < 0) {
		log_error("TLS priority string at \"%s\": %s", errpos ? errpos : "?",
		          gnutls_strerror(r));
		goto fail;
	}
	return cr;
fail:
	nbd_tls_creds_free(cr);
	return NULL;
}

void nbd_tls_creds_free(struct nbd_tls_creds *cr)
{
	if (cr == NULL)
		return;
	if (cr->prio)
		gnutls_priority_deinit(cr->prio);
	if (cr->pskc)
		gnutls_psk_free_server_credentials(cr->pskc);
	if (cr->x509)
		gnutls_certificate_free_credentials(cr->x509);
	pskfile_free(&cr->keys);
	free(cr);
}

const char *nbd_tls_creds_kind(const struct nbd_tls_creds *cr)
{
	return cr->psk ? "PSK" : "X.509";
}

/* ---- Transport: GnuTLS <-> evbuffers ------------------------------------ */

static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
	struct nbd_tls *t = p;

	if (evbuffer_add(bufferevent_get_output(t->raw), data, len) != 0) {
		gnutls_transport_set_errno(t->sess, ENOMEM);
		return -1;
	}
	return (ssize_t)len;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *data, size_t len)
{
	struct nbd_tls *t = p;
	int n = evbuffer_remove(t->raw_in, data, len);

	if (n <= 0) {
		gnutls_transport_set_errno(t->sess, EAGAIN);
		return -1;
	}
	return n;
}

/* Non-blocking: never waits, only says whether a byte is there. */
static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
	struct nbd_tls *t = p;

	(void)ms;
	return evbuffer_get_length(t->raw_in) > 0;
}

static void tls_fail(struct nbd_tls *t, const char *what, int r)
{
	const char *alert = r == GNUTLS_E_FATAL_ALERT_RECEIVED
	                        ? gnutls_alert_get_name(gnutls_alert_get(t->sess))
	                        : NULL;

	t->failed = 1;
	snprintf(t->err, sizeof(t->err), "TLS %s failed: %s%s%s%s", what, gnutls_strerror(r),
	         alert ? " (" : "", alert ? alert : "", alert ? ")" : "");
}

/*
 * The filter's output function: plaintext from src, one record at a time,
 * while the socket's queue (dst) takes fewer than lim more bytes; at
 * BEV_FINISHED (nbd_tls_finish) also the close_notify.
 */
static enum bufferevent_filter_result tls_filter_out(struct evbuffer *src, struct evbuffer *dst,
                                                     ev_ssize_t lim,
                                                     enum bufferevent_flush_mode mode, void *ctx)
{
	struct nbd_tls *t = ctx;
	size_t start = evbuffer_get_length(dst);
	int any = 0;

	if (!t->established || t->failed)
		return BEV_NEED_MORE;
	while (evbuffer_get_length(src) > 0 &&
	       (lim < 0 || evbuffer_get_length(dst) - start < (size_t)lim)) {
		size_t n = evbuffer_get_length(src);
		unsigned char *p;
		ssize_t w;

		if (n > TLS_RECORD_MAX)
			n = TLS_RECORD_MAX;
		p = evbuffer_pullup(src, (ev_ssize_t)n);
		w = gnutls_record_send(t->sess, p, n);
		if (w <= 0) {
			tls_fail(t, "send", (int)w);
			log_error("nbd %s: %s", t->name, t->err);
			/* Deferred: this may run inside a write of the connection. */
			bufferevent_trigger_event(t->bev, BEV_EVENT_ERROR,
			                          BEV_TRIG_DEFER_CALLBACKS);
			return BEV_ERROR;
		}
		evbuffer_drain(src, (size_t)w);
		any = 1;
	}
	if (mode == BEV_FINISHED && evbuffer_get_length(src) == 0 && !t->bye_sent) {
		/* SHUT_WR: sends close_notify and does not wait for the client's. */
		gnutls_bye(t->sess, GNUTLS_SHUT_WR);
		t->bye_sent = 1;
		any = 1;
	}
	return any ? BEV_OK : BEV_NEED_MORE;
}

/* The filter frees the session with itself. */
static void tls_free(void *arg)
{
	struct nbd_tls *t = arg;

	gnutls_deinit(t->sess);
	evbuffer_free(t->in);
	free(t);
}

/* ---- Sessions ----------------------------------------------------------- */

struct nbd_tls *nbd_tls_start(const struct nbd_tls_creds *cr, struct bufferevent *raw,
                              struct evbuffer *raw_in, const char *name)
{
	struct nbd_tls *t = xcalloc(1, sizeof(*t));
	int r;

	t->cr = cr;
	t->raw = raw;
	t->raw_in = raw_in;
	snprintf(t->name, sizeof(t->name), "%s", name);
	if (gnutls_init(&t->sess, GNUTLS_SERVER | GNUTLS_NONBLOCK) != 0)
		fatal("out of memory");
	gnutls_session_set_ptr(t->sess, t);
	r = gnutls_priority_set(t->sess, cr->prio);
	if (r == 0)
		r = cr->psk ? gnutls_credentials_set(t->sess, GNUTLS_CRD_PSK, cr->pskc)
		            : gnutls_credentials_set(t->sess, GNUTLS_CRD_CERTIFICATE, cr->x509);
	if (r != 0)
		fatal("gnutls session setup: %s", gnutls_strerror(r));
	if (cr->verify_peer) {
		/* The client's certificate must chain to ca-cert.pem (no name is checked). */
		gnutls_certificate_server_set_request(t->sess, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(t->sess, NULL, 0);
	}
	gnutls_transport_set_ptr(t->sess, t);
	gnutls_transport_set_push_function(t->sess, tls_push);
	gnutls_transport_set_pull_function(t->sess, tls_pull);
	gnutls_transport_set_pull_timeout_function(t->sess, tls_pull_timeout);
	gnutls_handshake_set_timeout(t->sess, 0);
	t->in = evbuffer_new();
	t->bev =
	    bufferevent_filter_new(raw, NULL, tls_filter_out, BEV_OPT_CLOSE_ON_FREE, tls_free, t);
	if (t->in == NULL || t->bev == NULL)
		fatal("out of memory");
	bufferevent_setwatermark(raw, EV_WRITE, TLS_RAW_LOW, TLS_RAW_HIGH);
	return t;
}

struct bufferevent *nbd_tls_bev(struct nbd_tls *t)
{
	return t->bev;
}

/* Who the client is, once the handshake is done. */
static void log_established(struct nbd_tls *t)
{
	char *desc = gnutls_session_get_desc(t->sess);
	char who[PSKFILE_NAME_MAX + 64] = "";

	if (t->cr->psk) {
		char user[PSKFILE_NAME_MAX + 1];

		const char *group = gnutls_group_get_name(gnutls_group_get(t->sess));

		/* TLS 1.3's description leaves out the key exchange: it says (EC)DHE. */
		printable(gnutls_psk_server_get_username(t->sess), user, sizeof(user));
		snprintf(who, sizeof(who), ", %s%s%s, PSK user %s",
		         gnutls_kx_get_name(gnutls_kx_get(t->sess)), group ? " " : "",
		         group ? group : "", user);
	} else if (t->cr->verify_peer) {
		unsigned n = 0;
		const gnutls_datum_t *certs = gnutls_certificate_get_peers(t->sess, &n);
		gnutls_x509_crt_t crt;
		gnutls_datum_t dn = {NULL, 0};

		if (n > 0 && gnutls_x509_crt_init(&crt) == 0) {
			if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0 &&
			    gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0) {
				char subj[PSKFILE_NAME_MAX + 1];

				printable((const char *)dn.data, subj, sizeof(subj));
				snprintf(who, sizeof(who), ", client %s", subj);
				gnutls_free(dn.data);
			}
			gnutls_x509_crt_deinit(crt);
		}
	}
	log_info("nbd %s: TLS established: %s%s", t->name, desc ? desc : "?", who);
	gnutls_free(desc);
}

static int tls_handshake(struct nbd_tls *t)
{
	int r = GNUTLS_E_AGAIN;

	for (int i = 0; i < TLS_RETRIES_MAX; i++) {
		r = gnutls_handshake(t->sess);
		if (r == 0 || r == GNUTLS_E_AGAIN || gnutls_error_is_fatal(r))
			break;
	}
	if (r == GNUTLS_E_AGAIN)
		return NBD_TLS_AGAIN;
	if (r != 0) {
		tls_fail(t, "handshake", r);
		/* Tell the client why (queued; the connection closes once it is sent). */
		gnutls_alert_send_appropriate(t->sess, r);
		return NBD_TLS_ERROR;
	}
	t->established = 1;
	log_established(t);
	/* Anything queued meanwhile (nothing, normally) can go now. */
	bufferevent_flush(t->bev, EV_WRITE, BEV_NORMAL);
	return NBD_TLS_AGAIN;
}

int nbd_tls_read(struct nbd_tls *t, size_t high)
{
	int retries = 0;

	if (t->failed)
		return NBD_TLS_ERROR;
	if (!t->established) {
		int r = tls_handshake(t);

		if (r != NBD_TLS_AGAIN || !t->established)
			return r;
	}
	while (evbuffer_get_length(t->in) < high &&
	       (evbuffer_get_length(t->raw_in) > 0 || gnutls_record_check_pending(t->sess) > 0)) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_reserve_space(t->in, TLS_RECORD_MAX, &v, 1) < 1)
			fatal("out of memory");
		n = gnutls_record_recv(t->sess, v.iov_base, v.iov_len);
		if (n > 0) {
			v.iov_len = (size_t)n;
			evbuffer_commit_space(t->in, &v, 1);
			continue;
		}
		if (n == 0)
			return NBD_TLS_EOF;
		if (n == GNUTLS_E_AGAIN)
			break;
		if (n == GNUTLS_E_REHANDSHAKE) {
			/* TLS 1.2 renegotiation: never needed here, refused. */
			snprintf(t->err, sizeof(t->err), "the client asked for TLS renegotiation");
			t->failed = 1;
			return NBD_TLS_ERROR;
		}
		if (gnutls_error_is_fatal((int)n) || ++retries > TLS_RETRIES_MAX) {
			tls_fail(t, "receive", (int)n);
			return NBD_TLS_ERROR;
		}
	}
	return NBD_TLS_AGAIN;
}

int nbd_tls_established(const struct nbd_tls *t)
{
	return t->established;
}

struct evbuffer *nbd_tls_input(struct nbd_tls *t)
{
	return t->in;
}

const char *nbd_tls_error(const struct nbd_tls *t)
{
	return t->err;
}

static void tls_drain_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct nbd_tls *t = arg;
	void (*fn)(void *) = t->drained;

	if (info->n_deleted == 0 || evbuffer_get_length(buf) > 0 || fn == NULL)
		return;
	t->drained = NULL;
	fn(t->drained_arg);
}

int nbd_tls_finish(struct nbd_tls *t, void (*drained)(void *arg), void *arg)
{
	struct evbuffer *out = bufferevent_get_output(t->raw);

	/* Past the watermarks: the connection ends, its last bytes must not wait. */
	bufferevent_flush(t->bev, EV_WRITE, BEV_FINISHED);
	if (evbuffer_get_length(out) == 0)
		return 1;
	t->drained = drained;
	t->drained_arg = arg;
	if (t->drain_cb == NULL)
		t->drain_cb = evbuffer_add_cb(out, tls_drain_cb, t);
	return 0;
}

void nbd_tls_stop(struct nbd_tls *t)
{
	t->drained = NULL;
	if (t->drain_cb != NULL) {
		evbuffer_remove_cb_entry(bufferevent_get_output(t->raw), t->drain_cb);
		t->drain_cb = NULL;
	}
}
