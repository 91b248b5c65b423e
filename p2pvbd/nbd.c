/* SPDX-License-Identifier: ISC */
/*
 * nbd: NBD server connections (transmission; the handshake is nbd_opts.c)
 * on libevent bufferevents, the glue that parks requests until their chunks
 * are readable, and the listener. The wire format is proto/nbd_wire.c; see
 * nbd.h and nbd_int.h.
 */
#include "nbd_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "parse.h"
#include "swarm_export.h"
#include "util.h"

/* Requests of one connection being executed or parked; more stop its reading. */
#define NBD_CONN_MAX_REQS 128
/* Stop reading a connection's requests while this much reply data waits. */
#define NBD_OUT_HIGH (64u * 1024u * 1024u)
/* Chunks after a sequential read that are fetched early. */
#define NBD_READAHEAD_CHUNKS 2
/* Unconsumed input before reading stops: the largest request (a 32 MiB WRITE) and then some. */
#define NBD_IN_HIGH (NBDW_MAX_PAYLOAD + 1024 * 1024)

static void conn_on_data(void *arg);
static void conn_on_end(void *arg, int err);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void req_try(struct nbd_req *q);
static void req_start(struct nbd_conn *c, struct nbd_req *q);

static const char *conn_state_names[] = {"CFLAGS", "OPTIONS", "SKIP", "TLS",
                                         "TRANS",  "CLOSING", "DEAD"};

void nbd_conn_set_state(struct nbd_conn *c, enum conn_state st)
{
	log_debug("nbd %s: %s -> %s", c->name, conn_state_names[c->state], conn_state_names[st]);
	c->state = st;
}

/* Deferred free: after every callback of the connection has returned. */
static void conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nbd_conn *c = arg;

	(void)fd;
	(void)what;
	netio_reader_free(&c->rd);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	free(c);
}

static void req_unpark(struct nbd_req *q)
{
	struct nbd_server *s = q->c->srv;

	if (!q->parked)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		s->parked = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->parked = 0;
	q->next = q->prev = NULL;
}

static void req_free(struct nbd_req *q)
{
	req_unpark(q);
	free(q->data);
	free(q);
}

/* Close now: parked requests of the connection are dropped (never answered). */
void nbd_conn_close(struct nbd_conn *c, const char *why)
{
	struct timeval now = {0, 0};
	struct nbd_req *q, *next;

	if (c->state == NC_DEAD)
		return;
	log_info("nbd %s: closed: %s", c->name, why);
	nbd_conn_set_state(c, NC_DEAD);
	for (q = c->srv->parked; q; q = next) {
		next = q->next;
		if (q->c == c)
			req_free(q);
	}
	for (struct nbd_conn **pp = &c->srv->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->srv->conns == NULL && c->srv->nconns_seen > 0 && c->srv->idle_cb != NULL)
		c->srv->idle_cb(c->srv->idle_arg);
	if (c->tls != NULL)
		nbd_tls_stop(c->tls);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	netio_reader_pause(&c->rd);
	/* Requests in swarm_flush still point to c: then the last flush_done frees it. */
	if (c->nflushing > 0)
		c->free_on_flush = 1;
	else
		event_base_once(c->srv->base, -1, EV_TIMEOUT, conn_free_cb, c, &now);
}

static void conn_tls_drained(void *arg)
{
	nbd_conn_close(arg, "done");
}

/* Close once the output is flushed (after ABORT, DISC, a fatal reply). */
void nbd_conn_close_after_flush(struct nbd_conn *c)
{
	nbd_conn_set_state(c, NC_CLOSING);
	netio_reader_pause(&c->rd);
	if (c->tls != NULL) {
		/* The last replies, then TLS's close_notify; then the socket must drain. */
		if (nbd_tls_finish(c->tls, conn_tls_drained, c))
			nbd_conn_close(c, "done");
		return;
	}
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		nbd_conn_close(c, "done");
	else
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

void nbd_conn_write(struct nbd_conn *c, const void *data, size_t len)
{
	bufferevent_write(c->bev, data, len);
}

/* ---- Transmission: replies --------------------------------------------- */

/* Reply to q with an error (or success, err == 0, for commands without data). */
static void reply_status(struct nbd_req *q, uint32_t err)
{
	struct nbd_conn *c = q->c;
	uint8_t buf[NBDW_ERROR_CHUNK_HDR_LEN + 128];

	if (c->state != NC_TRANS && c->state != NC_CLOSING)
		return;
	if (err != 0)
		log_debug("nbd %s: %s at %llu+%u: %s", c->name, nbdw_cmd_name(q->r.type),
		          (unsigned long long)q->r.offset, q->r.length, nbdw_err_name(err));
	if (c->structured && (q->r.type == NBD_CMD_READ || q->r.type == NBD_CMD_BLOCK_STATUS)) {
		if (err == 0) {
			nbdw_chunk_none_encode(buf, q->r.cookie);
			nbd_conn_write(c, buf, NBDW_CHUNK_HEADER_LEN);
		} else {
			const char *msg = nbdw_err_name(err);
			size_t n = nbdw_chunk_error_encode(buf, sizeof(buf), NBD_REPLY_FLAG_DONE,
			                                   q->r.cookie, err, msg, strlen(msg));

			nbd_conn_write(c, buf, n);
		}
	} else {
		nbdw_simple_reply_encode(buf, err, q->r.cookie);
		nbd_conn_write(c, buf, NBDW_SIMPLE_REPLY_LEN);
	}
}

/* The request is answered: account, and close after DISC once idle. */
static void req_done(struct nbd_req *q)
{
	struct nbd_conn *c = q->c;

	c->nreqs--;
	req_free(q);
	if (c->state == NC_TRANS && c->read_paused && c->nreqs < NBD_CONN_MAX_REQS / 2) {
		c->read_paused = 0;
		netio_reader_resume(&c->rd);
	}
	if (c->disc && c->nreqs == 0 && c->state == NC_TRANS)
		nbd_conn_close_after_flush(c);
}

static void reply_read(struct nbd_req *q)
{
	struct nbd_conn *c = q->c;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer_iovec v;
	size_t hdr = c->structured ? NBDW_OFFSET_DATA_HDR_LEN : NBDW_SIMPLE_REPLY_LEN;
	size_t total = hdr + q->r.length;
	uint8_t *p;

	if (evbuffer_reserve_space(out, (ev_ssize_t)total, &v, 1) < 1 || v.iov_len < total) {
		reply_status(q, NBD_ENOMEM);
		return;
	}
	p = v.iov_base;
	if (swarm_read(c->srv->sw, q->r.offset, p + hdr, q->r.length) != 0) {
		reply_status(q, NBD_EIO); /* the reservation is dropped uncommitted */
		return;
	}
	if (c->structured)
		nbdw_chunk_offset_data_hdr_encode(p, NBD_REPLY_FLAG_DONE, q->r.cookie, q->r.offset,
		                                  q->r.length);
	else
		nbdw_simple_reply_encode(p, 0, q->r.cookie);
	v.iov_len = total;
	evbuffer_commit_space(out, &v, 1);
}

static void reply_block_status(struct nbd_req *q)
{
	struct nbd_conn *c = q->c;
	struct nbd_server *s = c->srv;
	uint64_t off = q->r.offset, end = q->r.offset + q->r.length;
	/* Enough descriptors for any request; merged runs make far fewer. */
	enum { MAX_DESC = 4096 };
	uint8_t *buf = xmalloc(NBDW_BLOCK_STATUS_HDR_LEN + MAX_DESC * NBDW_BLOCK_DESC_LEN);
	uint32_t n = 0, run_len = 0, run_status = 0;

	while (off < end && n < MAX_DESC) {
		uint32_t chunk = (uint32_t)(off / s->chunk_size);
		uint64_t chunk_end = (uint64_t)(chunk + 1) * s->chunk_size;
		uint64_t stop = chunk_end < end ? chunk_end : end;
		uint32_t status = swarm_is_zero(s->sw, chunk) ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0;
		uint32_t len = (uint32_t)(stop - off);

		if (run_len > 0 && (status != run_status || (uint64_t)run_len + len > UINT32_MAX)) {
			nbdw_block_desc_encode(buf + NBDW_BLOCK_STATUS_HDR_LEN +
			                           (size_t)n * NBDW_BLOCK_DESC_LEN,
			                       run_len, run_status);
			n++;
			run_len = 0;
			if (q->r.flags & NBD_CMD_FLAG_REQ_ONE)
				break;
		}
		run_status = status;
		run_len += len;
		off = stop;
	}
	if (run_len > 0 && n < MAX_DESC) {
		nbdw_block_desc_encode(buf + NBDW_BLOCK_STATUS_HDR_LEN +
		                           (size_t)n * NBDW_BLOCK_DESC_LEN,
		                       run_len, run_status);
		n++;
	}
	nbdw_chunk_block_status_hdr_encode(buf, NBD_REPLY_FLAG_DONE, q->r.cookie, c->meta_id, n);
	nbd_conn_write(c, buf, NBDW_BLOCK_STATUS_HDR_LEN + (size_t)n * NBDW_BLOCK_DESC_LEN);
	free(buf);
}

/* ---- Transmission: execution ------------------------------------------- */

static void flush_done(void *arg, int result)
{
	struct nbd_req *q = arg;
	struct nbd_conn *c = q->c;

	c->nflushing--;
	reply_status(q, result == 0 ? 0 : NBD_EIO);
	req_done(q);
	/* Not from a callback of c's bufferevent (and maybe after the server is freed). */
	if (c->free_on_flush && c->nflushing == 0)
		conn_free_cb(-1, 0, c);
}

static void req_flush(struct nbd_req *q)
{
	q->c->nflushing++;
	swarm_flush(q->c->srv->sw, flush_done, q);
}

/* Write-through: a destination holds the write; then a FUA write is flushed too. */
static void write_through_done(void *arg, int result)
{
	struct nbd_req *q = arg;

	if (result == 0 && (q->r.flags & NBD_CMD_FLAG_FUA)) {
		q->c->nflushing--;
		req_flush(q);
		return;
	}
	flush_done(q, result);
}

/*
 * Is every chunk of q ready for it? Reads need readable chunks; writes need
 * writable ones (a chunk the write covers whole needs no fetch). Missing
 * chunks are faulted on (fetched first); q->next_check is the first of
 * them, whose arrival wakes q. Every chunk is looked at again each time: one
 * a write covers whole may have begun to arrive since (the write must wait
 * for that copy to land, not race it), one a read saw may have gone stale.
 */
static int req_ready(struct nbd_req *q)
{
	struct nbd_server *s = q->c->srv;
	uint64_t off = q->r.offset, end = q->r.offset + q->r.length;
	uint32_t first = (uint32_t)(off / s->chunk_size),
	         last = (uint32_t)((end - 1) / s->chunk_size);
	int write = q->r.type != NBD_CMD_READ;
	int ready = 1;

	for (uint32_t ch = first; ch <= last; ch++) {
		uint64_t cstart = (uint64_t)ch * s->chunk_size;
		uint64_t cend = cstart + s->chunk_size < s->size ? cstart + s->chunk_size : s->size;
		int whole = off <= cstart && end >= cend;
		int ok = write ? swarm_writable(s->sw, ch, whole) : swarm_readable(s->sw, ch);

		if (!ok) {
			if (ready)
				q->next_check = ch;
			ready = 0;
			if (!(write && whole))
				swarm_fault(s->sw, ch, 0);
		}
	}
	return ready;
}

static void req_execute(struct nbd_req *q)
{
	struct nbd_conn *c = q->c;
	struct nbd_server *s = c->srv;
	int fua = q->r.flags & NBD_CMD_FLAG_FUA;
	int rc;

	switch (q->r.type) {
	case NBD_CMD_READ:
		reply_read(q);
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_WRITE_ZEROES:
	case NBD_CMD_TRIM:
		if (q->r.type == NBD_CMD_WRITE)
			rc = swarm_local_write(s->sw, q->r.offset, q->data, q->r.length, 0, 0);
		else
			rc = swarm_local_write(s->sw, q->r.offset, NULL, q->r.length, 1,
			                       q->r.type == NBD_CMD_TRIM ||
			                           !(q->r.flags & NBD_CMD_FLAG_NO_HOLE));
		if (rc != 0) {
			/*
			 * A frozen source refuses the write: ENOSPC, so that QEMU's
			 * default error policy (werror=enospc) pauses the VM and retries
			 * the write once resumed after a thaw, instead of failing it in
			 * the guest (a migration that failed after the freeze, whose VM
			 * QEMU restarted before the seed thawed).
			 */
			reply_status(q, errno == EROFS ? NBD_ENOSPC : NBD_EIO);
			break;
		}
		if (swarm_write_through(s->sw)) {
			/* Answered (like a flush) once a destination holds it. */
			c->nflushing++;
			swarm_write_wait(s->sw, q->r.offset, q->r.length, write_through_done, q);
			return;
		}
		if (fua) {
			req_flush(q);
			return;
		}
		reply_status(q, 0);
		break;
	default:
		reply_status(q, NBD_EINVAL);
	}
	req_done(q);
}

/* Run q if its chunks are ready, else park it until they are. */
static void req_try(struct nbd_req *q)
{
	struct nbd_server *s = q->c->srv;

	if (!req_ready(q)) {
		if (!q->parked) {
			q->parked = 1;
			q->next = s->parked;
			q->prev = NULL;
			if (s->parked)
				s->parked->prev = q;
			s->parked = q;
		}
		return;
	}
	req_unpark(q);
	req_execute(q);
}

/*
 * A chunk became readable: retry the parked requests waiting for it. Each is
 * tried at most once per call (a retry may free others, so the list is
 * searched again after each).
 */
static void on_chunk(void *arg, uint32_t chunk)
{
	struct nbd_server *s = arg;
	struct nbd_req *q;

	s->epoch++;
	for (;;) {
		for (q = s->parked; q; q = q->next)
			if (q->seen != s->epoch &&
			    (q->next_check == chunk || chunk == SWARM_ALL_CHUNKS))
				break;
		if (q == NULL)
			return;
		q->seen = s->epoch;
		if (!q->held) {
			req_try(q);
		} else if (swarm_final(s->sw)) {
			q->held = 0;
			req_unpark(q);
			req_start(q->c, q);
		}
	}
}

/* Park q (not started) until the volume's generation is final. */
static void req_hold(struct nbd_req *q)
{
	struct nbd_server *s = q->c->srv;

	q->held = 1;
	q->next_check = SWARM_ALL_CHUNKS; /* no single chunk wakes it */
	q->parked = 1;
	q->next = s->parked;
	q->prev = NULL;
	if (s->parked)
		s->parked->prev = q;
	s->parked = q;
}

/* A decoded, validated request: start it. */
static void req_start(struct nbd_conn *c, struct nbd_req *q)
{
	struct nbd_server *s = c->srv;
	uint32_t first = (uint32_t)(q->r.offset / s->chunk_size);

	/*
	 * A destination answers only against the final generation (the source
	 * froze): until then every request waits, reads, writes, flushes and
	 * block status alike (PROTOCOL.md §9).
	 */
	if (!swarm_final(s->sw)) {
		req_hold(q);
		return;
	}

	switch (q->r.type) {
	case NBD_CMD_FLUSH:
		req_flush(q);
		return;
	case NBD_CMD_BLOCK_STATUS:
		reply_block_status(q);
		req_done(q);
		return;
	case NBD_CMD_CACHE:
		/* Fetch early, answer at once. */
		for (uint32_t ch = first; (uint64_t)ch * s->chunk_size < q->r.offset + q->r.length;
		     ch++)
			swarm_fault(s->sw, ch, 1);
		reply_status(q, 0);
		req_done(q);
		return;
	case NBD_CMD_READ: {
		uint64_t end = q->r.offset + q->r.length;

		/* A sequential reader gets the chunks after this read early. */
		if (q->r.offset == c->last_read_end) {
			uint32_t after = (uint32_t)((end - 1) / s->chunk_size) + 1;

			for (uint32_t i = 0; i < NBD_READAHEAD_CHUNKS; i++)
				if ((uint64_t)(after + i) * s->chunk_size < s->size)
					swarm_fault(s->sw, after + i, 1);
		}
		c->last_read_end = end;
		break;
	}
	default:
		break;
	}
	q->next_check = first;
	req_try(q);
}

/* Transmission input; returns 1 if it consumed a request, 0 if it needs more bytes. */
static int conn_read_request(struct nbd_conn *c, struct evbuffer *in)
{
	uint8_t hdr[NBDW_REQUEST_LEN];
	struct nbdw_request r;
	struct nbd_req *q;
	uint32_t payload;
	int err;

	if (evbuffer_get_length(in) < NBDW_REQUEST_LEN)
		return 0;
	evbuffer_copyout(in, hdr, NBDW_REQUEST_LEN);
	if (nbdw_request_decode(hdr, NBDW_REQUEST_LEN, &r) != 0) {
		nbd_conn_close(c, "bad request magic");
		return 1;
	}
	payload = nbdw_request_payload_len(&r);
	if (payload > NBDW_MAX_PAYLOAD) {
		/* The spec allows dropping a client that sends this much unasked. */
		nbd_conn_close(c, "write payload beyond 32 MiB");
		return 1;
	}
	if (evbuffer_get_length(in) < NBDW_REQUEST_LEN + (size_t)payload)
		return 0;
	evbuffer_drain(in, NBDW_REQUEST_LEN);
	q = xcalloc(1, sizeof(*q));
	q->c = c;
	q->r = r;
	c->nreqs++;
	err = nbdw_request_check(&r, &c->lim);
	if (payload > 0) {
		if (err == 0) {
			q->data = xmalloc(payload);
			evbuffer_remove(in, q->data, payload);
		} else {
			evbuffer_drain(in, payload);
		}
	}
	if (r.type == NBD_CMD_DISC) {
		c->disc = 1;
		c->nreqs--;
		free(q);
		netio_reader_pause(&c->rd);
		if (c->nreqs == 0)
			nbd_conn_close_after_flush(c);
		return 1;
	}
	if (err != 0) {
		reply_status(q, (uint32_t)err);
		req_done(q);
		return 1;
	}
	log_debug("nbd %s: %s %llu+%u flags %#x", c->name, nbdw_cmd_name(r.type),
	          (unsigned long long)r.offset, r.length, r.flags);
	req_start(c, q);
	if (c->state == NC_TRANS && !c->read_paused &&
	    (c->nreqs >= NBD_CONN_MAX_REQS ||
	     evbuffer_get_length(bufferevent_get_output(c->bev)) > NBD_OUT_HIGH)) {
		c->read_paused = 1;
		netio_reader_pause(&c->rd);
	}
	return 1;
}

/* ---- Connection events -------------------------------------------------- */

void nbd_conn_start_tls(struct nbd_conn *c)
{
	/* The NBD_REP_ACK is already queued on the socket's bufferevent, in plaintext. */
	c->tls = nbd_tls_start(c->srv->tls, c->bev, c->rd.in, c->name);
	c->bev = nbd_tls_bev(c->tls);
	bufferevent_setcb(c->bev, NULL, conn_write_cb, conn_event_cb, c);
	nbd_conn_set_state(c, NC_TLS);
}

/*
 * With TLS: the handshake, or decrypt what came in; 0, or -1 if c closed.
 * Decrypted input stops at NBD_IN_HIGH like plain input (the rest waits as
 * ciphertext, and then in the socket).
 */
static int conn_tls_read(struct nbd_conn *c)
{
	int r = nbd_tls_read(c->tls, NBD_IN_HIGH);

	if (r == NBD_TLS_ERROR) {
		/* Closed once a TLS alert saying why, if any, is sent. */
		log_warn("nbd %s: %s", c->name, nbd_tls_error(c->tls));
		nbd_conn_close_after_flush(c);
		return -1;
	}
	/* Like a socket's EOF: what arrived before it is still taken (conn_on_data). */
	if (r == NBD_TLS_EOF)
		c->tls_eof = 1;
	if (c->state == NC_TLS && nbd_tls_established(c->tls))
		nbd_conn_set_state(c, NC_OPTIONS);
	return 0;
}

static void conn_on_data(void *arg)
{
	struct nbd_conn *c = arg;

	for (;;) {
		struct evbuffer *in = c->rd.in;
		int progressed;

		/* Each time round: NBD_OPT_STARTTLS may have just turned TLS on. */
		if (c->tls != NULL) {
			if (conn_tls_read(c) != 0)
				return;
			in = nbd_tls_input(c->tls);
		}
		if (c->state == NC_TRANS) {
			if (c->read_paused || c->disc)
				break;
			progressed = conn_read_request(c, in);
		} else if (c->state == NC_CFLAGS || c->state == NC_OPTIONS || c->state == NC_SKIP) {
			progressed = nbd_opts_read(c, in);
		} else {
			break;
		}
		if (!progressed)
			break;
	}
	if (c->tls_eof && c->state != NC_DEAD) {
		nbd_conn_close(c, c->state == NC_CLOSING ? "done" : "client closed TLS");
		return;
	}
	if (c->state != NC_DEAD)
		netio_reader_consumed(&c->rd);
}

static void conn_on_end(void *arg, int err)
{
	struct nbd_conn *c = arg;

	if (err == 0)
		nbd_conn_close(c, c->state == NC_CLOSING ? "done" : "client disconnected");
	else
		nbd_conn_close(c, strerror(err));
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct nbd_conn *c = arg;

	if (c->state == NC_CLOSING) {
		/* With TLS the filter is empty before the socket is: conn_tls_drained closes. */
		if (c->tls == NULL && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			nbd_conn_close(c, "done");
		return;
	}
	if (c->state == NC_TRANS && c->read_paused && c->nreqs < NBD_CONN_MAX_REQS &&
	    evbuffer_get_length(bufferevent_get_output(bev)) <= NBD_OUT_HIGH / 4) {
		c->read_paused = 0;
		netio_reader_resume(&c->rd);
		conn_on_data(c);
	}
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct nbd_conn *c = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF)
		nbd_conn_close(c, c->state == NC_CLOSING ? "done" : "client disconnected");
	else if (what & BEV_EVENT_ERROR)
		nbd_conn_close(c, c->tls != NULL && nbd_tls_error(c->tls)[0] != '\0'
		                      ? nbd_tls_error(c->tls)
		                      : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	struct nbd_server *s = arg;
	struct nbd_conn *c = xcalloc(1, sizeof(*c));
	uint8_t greeting[NBDW_GREETING_LEN];
	static unsigned serial;

	(void)l;
	(void)salen;
	c->srv = s;
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
		char host[INET6_ADDRSTRLEN] = "?";
		int one = 1;

		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host,
			          sizeof(host));
		else
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, host,
			          sizeof(host));
		snprintf(c->name, sizeof(c->name), "%s#%u", host, ++serial);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	} else {
		snprintf(c->name, sizeof(c->name), "unix#%u", ++serial);
	}
	evutil_make_socket_nonblocking(fd);
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		evutil_closesocket(fd);
		free(c);
		return;
	}
	/* The bufferevent only writes; reading is a netio_reader (netio.h). */
	bufferevent_set_max_single_write(c->bev, 1024 * 1024);
	bufferevent_setcb(c->bev, NULL, conn_write_cb, conn_event_cb, c);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
	if (netio_reader_init(&c->rd, s->base, fd, NBD_IN_HIGH, NULL, conn_on_data, conn_on_end,
	                      c) != 0) {
		bufferevent_free(c->bev);
		free(c);
		return;
	}
	c->state = NC_CFLAGS;
	c->last_read_end = UINT64_MAX;
	c->next = s->conns;
	s->conns = c;
	nbdw_greeting_encode(greeting);
	nbd_conn_write(c, greeting, sizeof(greeting));
	log_debug("nbd %s: connected", c->name);
}

/* ---- Server ------------------------------------------------------------- */

/* Is the listening address ss a loopback one (127/8, ::1, ::ffff:127/104)? */
static int addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 0;
}

struct nbd_server *nbd_server_new(struct event_base *base, struct swarm *sw, const char *spec,
                                  const struct nbd_tls_creds *tls)
{
	struct nbd_server *s = xcalloc(1, sizeof(*s));
	struct sockaddr_storage ss;
	socklen_t sslen;

	s->base = base;
	s->sw = sw;
	s->tls = tls;
	s->size = swarm_volume_size(sw);
	s->chunk_size = swarm_chunk_size(sw);
	memset(&ss, 0, sizeof(ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *su = (struct sockaddr_un *)&ss;
		const char *path = spec + 5;

		if (strlen(path) == 0 || strlen(path) >= sizeof(su->sun_path)) {
			log_error("export %s: bad Unix socket path", spec);
			goto fail;
		}
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, path);
		sslen = sizeof(*su);
		if (sockpath_claim(path, "export") != 0)
			goto fail;
		s->unix_path = xstrdup(path);
		snprintf(s->address, sizeof(s->address), "unix:%s", path);
	} else {
		char host[256];
		uint16_t port;

		if (parse_hostport(spec, 1, host, sizeof(host), &port) != 0) {
			log_error("export %s: expected unix:PATH or HOST:PORT", spec);
			goto fail;
		}
		if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
			((struct sockaddr_in *)&ss)->sin_family = AF_INET;
			((struct sockaddr_in *)&ss)->sin_port = htons(port);
			sslen = sizeof(struct sockaddr_in);
		} else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) ==
		           1) {
			((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
			((struct sockaddr_in6 *)&ss)->sin6_port = htons(port);
			sslen = sizeof(struct sockaddr_in6);
		} else {
			log_error("export %s: the host must be a numeric address", spec);
			goto fail;
		}
	}
	{
		/* The socket is the VM's disk: created for its owner only (no window
		 * in which others could connect), and checked below. */
		mode_t old_mask = umask(077);

		s->listener = evconnlistener_new_bind(base, on_accept, s,
		                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
		                                      (struct sockaddr *)&ss, (int)sslen);
		umask(old_mask);
	}
	if (s->listener == NULL) {
		log_error("export %s: cannot listen: %s", spec, strerror(errno));
		goto fail;
	}
	if (s->unix_path != NULL && sockpath_made(&s->sock, s->unix_path) != 0) {
		evconnlistener_free(s->listener);
		goto fail;
	}
	if (s->unix_path != NULL && chmod(s->unix_path, 0600) != 0) {
		log_error("export %s: chmod 600: %s", spec, strerror(errno));
		evconnlistener_free(s->listener);
		sockpath_release(&s->sock);
		goto fail;
	}
	if (s->unix_path == NULL && tls == NULL && !addr_is_loopback(&ss))
		log_warn("export %s: plaintext NBD on an address other hosts can reach: anyone who "
		         "gets to it can read and write the disk; use --tls-psk or --tls-creds",
		         spec);
	if (s->unix_path == NULL) {
		char host[INET6_ADDRSTRLEN];

		sslen = sizeof(ss);
		getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&ss, &sslen);
		if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
			          sizeof(host));
			snprintf(s->address, sizeof(s->address), "[%s]:%u", host,
			         ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
		} else {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
			          sizeof(host));
			snprintf(s->address, sizeof(s->address), "%s:%u", host,
			         ntohs(((struct sockaddr_in *)&ss)->sin_port));
		}
	}
	swarm_set_chunk_cb(sw, on_chunk, s);
	return s;
fail:
	free(s->unix_path);
	free(s);
	return NULL;
}

void nbd_server_set_idle_cb(struct nbd_server *s, void (*fn)(void *arg), void *arg)
{
	s->idle_cb = fn;
	s->idle_arg = arg;
}

const char *nbd_server_address(const struct nbd_server *s)
{
	return s->address;
}

void nbd_server_free(struct nbd_server *s)
{
	if (s == NULL)
		return;
	swarm_set_chunk_cb(s->sw, NULL, NULL);
	while (s->conns != NULL)
		nbd_conn_close(s->conns, "server stopping");
	if (s->listener)
		evconnlistener_free(s->listener);
	sockpath_release(&s->sock);
	free(s->unix_path);
	free(s);
}
