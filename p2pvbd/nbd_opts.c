/* SPDX-License-Identifier: ISC */
/*
 * nbd_opts: the NBD server's handshake: client flags and option haggling,
 * up to the transmission phase. The wire format is proto/nbd_wire.c; the
 * connections around it are nbd.c (see nbd_int.h).
 */
#include <string.h>

#include "nbd_int.h"
#include "swarm_export.h"
#include "util.h"

/* The only metadata context: base:allocation gets this id. */
#define NBD_CTX_BASE_ALLOCATION 1
/* Preferred block size advertised: the guest's page size. */
#define NBD_PREF_BLOCK 4096u

/*
 * Transmission flags. CAN_MULTI_CONN holds because every connection writes
 * the same image on the same thread, and a flush syncs all of it. DF only
 * with structured replies (the flag is meaningless without them).
 */
static uint16_t export_tflags(const struct nbd_conn *c)
{
	return NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
	       NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE |
	       (c->structured ? NBD_FLAG_SEND_DF : 0);
}

static void rep_ack(struct nbd_conn *c, uint32_t option)
{
	uint8_t buf[NBDW_REP_HEADER_LEN];

	nbd_conn_write(c, buf, nbdw_rep_ack_encode(buf, sizeof(buf), option));
}

static void rep_err(struct nbd_conn *c, uint32_t option, uint32_t type, const char *msg)
{
	uint8_t buf[NBDW_REP_HEADER_LEN + 256];
	size_t n = nbdw_rep_err_encode(buf, sizeof(buf), option, type, msg, strlen(msg));

	log_debug("nbd %s: %s: %s (%s)", c->name, nbdw_opt_name(option), nbdw_rep_name(type), msg);
	nbd_conn_write(c, buf, n);
}

static void enter_transmission(struct nbd_conn *c)
{
	struct nbd_server *s = c->srv;

	memset(&c->lim, 0, sizeof(c->lim));
	c->lim.export_size = s->size;
	c->lim.min_block = 1;
	c->lim.max_payload = NBDW_MAX_PAYLOAD;
	c->lim.tflags = export_tflags(c);
	c->lim.structured = c->structured != 0;
	c->lim.meta_base_allocation = c->meta_id;
	nbd_conn_set_state(c, NC_TRANS);
	s->nconns_seen++;
	log_info("nbd %s: transmission (%s replies%s)", c->name,
	         c->structured ? "structured" : "simple", c->meta_id ? ", base:allocation" : "");
}

static void opt_info_go(struct nbd_conn *c, uint32_t option, const uint8_t *data, uint32_t len)
{
	struct nbd_server *s = c->srv;
	struct nbdw_opt_go go;
	uint8_t buf[NBDW_REP_HEADER_LEN + 64];
	static const char desc[] = "p2pvbd volume";
	size_t n;

	if (nbdw_opt_go_parse(data, len, &go) != 0) {
		rep_err(c, option, NBD_REP_ERR_INVALID, "malformed option data");
		return;
	}
	n = nbdw_rep_info_export_encode(buf, sizeof(buf), option, s->size, export_tflags(c));
	nbd_conn_write(c, buf, n);
	if (go.info_mask & (1u << NBD_INFO_DESCRIPTION)) {
		n = nbdw_rep_info_description_encode(buf, sizeof(buf), option, desc,
		                                     sizeof(desc) - 1);
		nbd_conn_write(c, buf, n);
	}
	/* Sent whether asked or not: any alignment works, 4 KiB is best. */
	n = nbdw_rep_info_block_size_encode(buf, sizeof(buf), option, 1, NBD_PREF_BLOCK,
	                                    NBDW_MAX_PAYLOAD);
	nbd_conn_write(c, buf, n);
	rep_ack(c, option);
	if (option == NBD_OPT_GO)
		enter_transmission(c);
}

/* Does query select base:allocation? (LIST also takes the namespace alone.) */
static int query_matches(const struct nbdw_str *q, int list)
{
	static const char full[] = NBDW_CONTEXT_BASE_ALLOCATION;

	if (q->len == sizeof(full) - 1 && memcmp(q->ptr, full, q->len) == 0)
		return 1;
	return list && q->len == 5 && memcmp(q->ptr, "base:", 5) == 0;
}

static void opt_meta(struct nbd_conn *c, uint32_t option, const uint8_t *data, uint32_t len)
{
	static const char full[] = NBDW_CONTEXT_BASE_ALLOCATION;
	int list = option == NBD_OPT_LIST_META_CONTEXT, match = 0;
	struct nbdw_opt_meta m;
	struct nbdw_meta_iter it;
	struct nbdw_str q;
	uint8_t buf[NBDW_REP_HEADER_LEN + 64];

	if (nbdw_opt_meta_parse(data, len, &m) != 0) {
		rep_err(c, option, NBD_REP_ERR_INVALID, "malformed option data");
		return;
	}
	if (!c->structured) {
		rep_err(c, option, NBD_REP_ERR_INVALID,
		        "metadata contexts need structured replies first");
		return;
	}
	if (list && m.n_queries == 0)
		match = 1;
	nbdw_meta_iter_init(&it, &m);
	while (nbdw_meta_next(&it, &q))
		if (query_matches(&q, list))
			match = 1;
	/* LIST replies carry id 0 (the spec: ids only mean something after SET). */
	if (match)
		nbd_conn_write(c, buf,
		               nbdw_rep_meta_context_encode(buf, sizeof(buf), option,
		                                            list ? 0 : NBD_CTX_BASE_ALLOCATION,
		                                            full, sizeof(full) - 1));
	if (!list)
		c->meta_id = match ? NBD_CTX_BASE_ALLOCATION : 0;
	rep_ack(c, option);
}

/*
 * FORCEDTLS (the spec's "TLS support"): until TLS is up, only STARTTLS and
 * ABORT are answered; anything else gets NBD_REP_ERR_TLS_REQD, and
 * NBD_OPT_EXPORT_NAME, which cannot fail, closes the connection. Returns 1
 * if the option was refused so.
 */
static int opt_needs_tls(struct nbd_conn *c, uint32_t option)
{
	if (c->srv->tls == NULL || c->tls != NULL || option == NBD_OPT_STARTTLS ||
	    option == NBD_OPT_ABORT)
		return 0;
	if (option == NBD_OPT_EXPORT_NAME) {
		nbd_conn_close(c, "NBD_OPT_EXPORT_NAME before TLS (this export requires TLS)");
		return 1;
	}
	log_info("nbd %s: %s before TLS: refused (this export requires NBD_OPT_STARTTLS first)",
	         c->name, nbdw_opt_name(option));
	rep_err(c, option, NBD_REP_ERR_TLS_REQD,
	        "this export requires TLS: NBD_OPT_STARTTLS first");
	return 1;
}

static void opt_starttls(struct nbd_conn *c, uint32_t len)
{
	if (c->srv->tls == NULL) {
		rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_POLICY,
		        "TLS is not configured on this export (--tls-psk or --tls-creds)");
		return;
	}
	if (c->tls != NULL) {
		rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already on");
		return;
	}
	if (nbdw_opt_nodata_check(NBD_OPT_STARTTLS, len) != 0) {
		rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
		return;
	}
	rep_ack(c, NBD_OPT_STARTTLS);
	nbd_conn_start_tls(c);
}

/* One complete option (header and data): answer it. */
static void opt_handle(struct nbd_conn *c, uint32_t option, const uint8_t *data, uint32_t len)
{
	struct nbd_server *s = c->srv;
	uint8_t buf[NBDW_EXPORT_REPLY_LEN + NBDW_REP_HEADER_LEN + 16];
	struct nbdw_str name;

	log_debug("nbd %s: option %s (%u bytes)", c->name, nbdw_opt_name(option), len);
	if (opt_needs_tls(c, option))
		return;
	switch (option) {
	case NBD_OPT_EXPORT_NAME:
		if (nbdw_opt_export_name_parse(data, len, &name) != 0) {
			nbd_conn_close(c, "malformed NBD_OPT_EXPORT_NAME");
			return;
		}
		nbd_conn_write(c, buf,
		               nbdw_export_name_reply_encode(buf, sizeof(buf), s->size,
		                                             export_tflags(c),
		                                             c->cflags & NBD_FLAG_C_NO_ZEROES));
		enter_transmission(c);
		return;
	case NBD_OPT_ABORT:
		rep_ack(c, option);
		nbd_conn_close_after_flush(c);
		return;
	case NBD_OPT_LIST:
		if (nbdw_opt_nodata_check(option, len) != 0) {
			rep_err(c, option, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
			return;
		}
		nbd_conn_write(c, buf,
		               nbdw_rep_server_encode(buf, sizeof(buf), option, "", 0, NULL, 0));
		rep_ack(c, option);
		return;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info_go(c, option, data, len);
		return;
	case NBD_OPT_STRUCTURED_REPLY:
		if (nbdw_opt_nodata_check(option, len) != 0) {
			rep_err(c, option, NBD_REP_ERR_INVALID, "takes no data");
			return;
		}
		c->structured = 1;
		rep_ack(c, option);
		return;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(c, option, data, len);
		return;
	case NBD_OPT_STARTTLS:
		opt_starttls(c, len);
		return;
	default:
		rep_err(c, option, NBD_REP_ERR_UNSUP, "option not supported");
	}
}

/* Handshake input; returns 1 if it consumed something, 0 if it needs more bytes. */
int nbd_opts_read(struct nbd_conn *c, struct evbuffer *in)
{
	uint8_t hdr[NBDW_OPT_HEADER_LEN];
	struct nbdw_opt_header h;
	size_t have = evbuffer_get_length(in);
	int r;

	switch (c->state) {
	case NC_CFLAGS:
		if (have < NBDW_CLIENT_FLAGS_LEN)
			return 0;
		evbuffer_remove(in, hdr, NBDW_CLIENT_FLAGS_LEN);
		if (nbdw_client_flags_decode(hdr, NBDW_CLIENT_FLAGS_LEN, &c->cflags) != 0) {
			nbd_conn_close(c, "unknown client flags");
			return 1;
		}
		if (!(c->cflags & NBD_FLAG_C_FIXED_NEWSTYLE)) {
			nbd_conn_close(c, "client does not speak fixed newstyle");
			return 1;
		}
		nbd_conn_set_state(c, NC_OPTIONS);
		return 1;
	case NC_SKIP: {
		size_t n = have < c->skip_left ? have : c->skip_left;

		if (n == 0)
			return 0;
		evbuffer_drain(in, n);
		c->skip_left -= (uint32_t)n;
		if (c->skip_left == 0) {
			if (!opt_needs_tls(c, c->skip_option))
				rep_err(c, c->skip_option, NBD_REP_ERR_TOO_BIG,
				        "option data too large");
			if (c->state == NC_SKIP)
				nbd_conn_set_state(c, NC_OPTIONS);
		}
		return 1;
	}
	case NC_OPTIONS:
		if (have < NBDW_OPT_HEADER_LEN)
			return 0;
		evbuffer_copyout(in, hdr, NBDW_OPT_HEADER_LEN);
		r = nbdw_opt_header_decode(hdr, NBDW_OPT_HEADER_LEN, NBDW_MAX_OPTION_LEN, &h);
		if (r == NBDW_INVALID) {
			nbd_conn_close(c, "bad option magic (not an NBD client?)");
			return 1;
		}
		if (r == NBDW_TOO_BIG) {
			evbuffer_drain(in, NBDW_OPT_HEADER_LEN);
			if (h.option == NBD_OPT_EXPORT_NAME) {
				nbd_conn_close(c, "oversized NBD_OPT_EXPORT_NAME");
				return 1;
			}
			c->skip_left = h.len;
			c->skip_option = h.option;
			nbd_conn_set_state(c, NC_SKIP);
			return 1;
		}
		if (have < NBDW_OPT_HEADER_LEN + (size_t)h.len)
			return 0;
		{
			uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(NBDW_OPT_HEADER_LEN + h.len));

			opt_handle(c, h.option, p + NBDW_OPT_HEADER_LEN, h.len);
			/* opt_handle may have closed c; the input buffer lives on until freed. */
			evbuffer_drain(in, NBDW_OPT_HEADER_LEN + h.len);
		}
		return 1;
	default:
		return 0;
	}
}
