/*
 * badpeer: a misbehaving source for the integration tests, built from the
 * project's own peer and codec modules. It serves the same volume as a real
 * seed (same key, volume id, secret and chunk size, so the same signed
 * manifest) but breaks one rule, chosen with --mode:
 *
 *   corrupt   flip one byte of every piece it sends
 *   badroot   send a manifest root whose signature does not verify
 *   badpage   send chunk-table pages that do not match the signed root
 *   stall     on the first request, send half a frame header and go silent
 *   oversize  on the first request, send a frame header claiming 4 GiB
 *   garbage   answer every connection with random bytes instead of a hello
 *
 * or, with --mode client, it connects to the seed named in the URI as a
 * destination and sends requests a seed must refuse (beyond the volume,
 * beyond a chunk, for a zero chunk, for a wrong generation), checking each
 * REJECT code; it exits 0 if the seed answered every one correctly.
 *
 * With --mode flood, it connects as a destination, asks for a page of the
 * chunk table 2000 times without ever reading a reply (about 100 MB of
 * replies), holds the connection for 5 s and exits 0: the test then checks
 * that the seed's memory stayed bounded and that it still serves.
 *
 * usage: badpeer --mode M --uri URI -k KEY [--chunk-size N] --port-file F IMAGE
 *        badpeer --mode client|flood --uri URI -k KEY IMAGE
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <netinet/in.h>

#include "manifest.h"
#include "peer.h"
#include "scan.h"
#include "uri.h"
#include "util.h"

static const char *mode;
static struct manifest man;
static uint8_t *root_blob;
static size_t root_blob_len;
static int image_fd;
static struct peer_ctx ctx;

static int is(const char *m)
{
	return strcmp(mode, m) == 0;
}

static int fill(void *arg, uint8_t *dst, size_t len, uint64_t off)
{
	(void)arg;
	if (pread(image_fd, dst, len, (off_t)off) != (ssize_t)len)
		return -1;
	if (is("corrupt"))
		dst[len / 2] ^= 0x5a;
	return 0;
}

/* Client mode: the requests to send and the REJECT code each must get. */
static struct {
	struct wire_block blk;
	uint16_t want;
	const char *what;
} probes[4];
static int nprobes, probe_next, probe_failures;

static void client_send_probe(struct peer *p)
{
	struct wire_msg m = {.type = WIRE_REQUEST};

	if (probe_next == nprobes) {
		fprintf(stderr, "badpeer: %d of %d probes answered wrongly\n", probe_failures,
		        nprobes);
		event_base_loopexit(ctx.base, NULL);
		return;
	}
	m.u.request.blk = probes[probe_next].blk;
	peer_send(p, &m);
}

static void client_reply(struct peer *p, const struct wire_msg *m)
{
	int ok = m->type == WIRE_REJECT && m->u.reject.code == probes[probe_next].want;

	fprintf(stderr, "badpeer: %s: got %s %s: %s\n", probes[probe_next].what,
	        wire_type_name(m->type),
	        m->type == WIRE_REJECT ? wire_code_name(m->u.reject.code) : "",
	        ok ? "ok" : "WRONG");
	probe_failures += !ok;
	probe_next++;
	client_send_probe(p);
}

/* Flood mode: the requests go out, nothing is read, then we leave. */
static void flood_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopexit(ctx.base, NULL);
}

static void on_ready(struct peer *p)
{
	struct timeval hold = {5, 0};

	if (is("client"))
		client_send_probe(p);
	if (!is("flood"))
		return;
	peer_pause_read(p);
	for (int i = 0; i < 2000; i++) {
		struct wire_msg m = {.type = WIRE_GET_PAGE};

		m.u.get_page.page = 0;
		peer_send(p, &m);
	}
	event_base_once(ctx.base, -1, EV_TIMEOUT, flood_done, NULL, &hold);
}

static void on_msg(struct peer *p, const struct wire_msg *m)
{
	struct wire_msg r;
	static uint8_t page[MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN];

	memset(&r, 0, sizeof(r));
	if (is("client")) {
		if (m->type == WIRE_REJECT || m->type == WIRE_PIECE)
			client_reply(p, m);
		return;
	}
	switch (m->type) {
	case WIRE_GET_ROOT: {
		uint8_t *blob = xmalloc(root_blob_len);
		uint32_t n = man.root.chunk_count;
		uint8_t *bits = xcalloc((n + 7) / 8, 1);

		memcpy(blob, root_blob, root_blob_len);
		if (is("badroot"))
			blob[MANIFEST_ROOT_HDR_LEN] ^= 1; /* first page hash */
		r.type = WIRE_ROOT;
		r.u.blob.data = blob;
		r.u.blob.len = (uint32_t)root_blob_len;
		peer_send(p, &r);
		for (uint32_t c = 0; c < n; c++)
			if (!(man.entries[c].flags & MANIFEST_F_ZERO))
				bits[c / 8] |= (uint8_t)(1u << (c % 8));
		memset(&r, 0, sizeof(r));
		r.type = WIRE_HAVE_MAP;
		r.u.have_map.first = 0;
		r.u.have_map.count = n;
		r.u.have_map.bits = bits;
		peer_send(p, &r);
		free(bits);
		free(blob);
		return;
	}
	case WIRE_GET_PAGE: {
		size_t n = manifest_page_encode(&man, m->u.get_page.page, page, sizeof(page));

		if (is("badpage"))
			page[n - 1] ^= 1;
		r.type = WIRE_PAGE;
		r.u.page.page = m->u.get_page.page;
		r.u.page.root_gen = man.root.generation;
		r.u.page.data = page;
		r.u.page.len = (uint32_t)n;
		peer_send(p, &r);
		return;
	}
	case WIRE_REQUEST: {
		const struct wire_block *b = &m->u.request.blk;
		struct evbuffer *out = bufferevent_get_output(p->bev);

		if (is("stall")) {
			static const uint8_t half[2] = {0, 4};

			evbuffer_add(out, half, sizeof(half));
			/* Stop answering anything: the fetcher must time out. */
			peer_pause_read(p);
			return;
		}
		if (is("oversize")) {
			static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xf0};

			evbuffer_add(out, huge, sizeof(huge));
			peer_pause_read(p);
			return;
		}
		peer_send_piece(p, b->chunk, b->gen, b->offset, b->length, fill, NULL,
		                (uint64_t)b->chunk * man.root.chunk_size + b->offset);
		return;
	}
	default:
		return;
	}
}

static void on_close(struct peer *p, int fatal_err, const char *reason)
{
	(void)fatal_err;
	fprintf(stderr, "badpeer: %s closed: %s\n", p->name, reason);
	if (is("client")) {
		probe_failures++;
		event_base_loopexit(ctx.base, NULL);
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
	(void)l;
	(void)arg;
	if (is("garbage")) {
		uint8_t junk[200];

		vcrypto_random(junk, sizeof(junk));
		if (write(fd, junk, sizeof(junk)) < 0)
			perror("write");
		close(fd);
		return;
	}
	peer_accept(&ctx, fd, sa, salen, NULL);
}

/*
 * Client modes: connect to the seed named first in the URI as a destination
 * (with an identity of its own, not the source's) and run until done. 0 or -1.
 */
static int run_as_destination(const struct uri *u)
{
	static struct vcrypto_identity me;

	vcrypto_identity_generate(&me);
	ctx.identity = &me;
	ctx.is_source = 0;
	ctx.timeout_s = 30;
	ctx.dns = evdns_base_new(ctx.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (peer_connect(&ctx, u->peer[0].host, u->peer[0].port, NULL) == NULL)
		return -1;
	event_base_dispatch(ctx.base);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"mode", required_argument, NULL, 'm'},
	    {"uri", required_argument, NULL, 'u'},
	    {"key", required_argument, NULL, 'k'},
	    {"chunk-size", required_argument, NULL, 'c'},
	    {"port-file", required_argument, NULL, 'p'},
	    {NULL, 0, NULL, 0},
	};
	static const struct peer_ops ops = {on_ready, on_msg, NULL, on_close};
	const char *uri_text = NULL, *key = NULL, *port_file = NULL;
	uint64_t chunk_size = MANIFEST_CHUNK_DEFAULT;
	struct vcrypto_identity id;
	struct manifest_entry *entries;
	struct uri u;
	struct stat st;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct evconnlistener *l;
	char err[200];
	FILE *f;
	int c;

	signal(SIGPIPE, SIG_IGN);
	log_init("badpeer", LOG_INFO);
	while ((c = getopt_long(argc, argv, "m:u:k:c:p:", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mode = optarg;
			break;
		case 'u':
			uri_text = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'c':
			if (parse_size(optarg, &chunk_size) != 0)
				return 2;
			break;
		case 'p':
			port_file = optarg;
			break;
		default:
			return 2;
		}
	}
	if (!mode || !uri_text || !key ||
	    (!port_file && strcmp(mode, "client") != 0 && strcmp(mode, "flood") != 0) ||
	    optind + 1 != argc) {
		fprintf(stderr, "usage: badpeer --mode M --uri URI -k KEY --port-file F IMAGE\n");
		return 2;
	}
	if (vcrypto_init() != 0 || vcrypto_identity_load(key, &id) != 0)
		return 1;
	if (uri_parse(uri_text, strlen(uri_text), &u, err, sizeof(err)) != 0) {
		fprintf(stderr, "badpeer: %s\n", err);
		return 1;
	}
	image_fd = open(argv[optind], O_RDONLY);
	if (image_fd < 0 || fstat(image_fd, &st) != 0) {
		perror(argv[optind]);
		return 1;
	}
	entries = xcalloc(manifest_chunk_count((uint64_t)st.st_size, (uint32_t)chunk_size),
	                  sizeof(*entries));
	if (scan_image(image_fd, (uint64_t)st.st_size, (uint32_t)chunk_size, 0, 0, entries, NULL,
	               NULL) != 0 ||
	    manifest_build(&man, u.volume_id, (uint64_t)st.st_size, (uint32_t)chunk_size, 0,
	                   entries, id.sk) != 0)
		return 1;
	/* As a seed without a VM: generation 0 is final. */
	manifest_set_flags(&man, MANIFEST_ROOT_F_FINAL, id.sk);
	if (manifest_root_encode(&man.root, &root_blob, &root_blob_len) != 0)
		return 1;

	ctx.base = event_base_new();
	ctx.ops = &ops;
	memcpy(ctx.volume_id, u.volume_id, sizeof(ctx.volume_id));
	memcpy(ctx.source_key, u.key, sizeof(ctx.source_key));
	memcpy(ctx.join_secret, u.secret, sizeof(ctx.join_secret));
	ctx.identity = &id;
	ctx.is_source = 1;
	ctx.timeout_s = 3600;

	if (is("flood"))
		return run_as_destination(&u) == 0 ? 0 : 1;
	if (is("client")) {
		uint32_t zero_chunk = UINT32_MAX, data_chunk = UINT32_MAX;

		for (uint32_t i = 0; i < man.root.chunk_count; i++) {
			if ((man.entries[i].flags & MANIFEST_F_ZERO) && zero_chunk == UINT32_MAX)
				zero_chunk = i;
			if (!(man.entries[i].flags & MANIFEST_F_ZERO) && data_chunk == UINT32_MAX)
				data_chunk = i;
		}
		if (zero_chunk == UINT32_MAX || data_chunk == UINT32_MAX) {
			fprintf(stderr,
			        "badpeer: client mode needs an image with zero and data chunks\n");
			return 2;
		}
		probes[0].blk = (struct wire_block){man.root.chunk_count + 5, 0, 0, 4096};
		probes[0].want = WIRE_E_RANGE;
		probes[0].what = "chunk beyond the volume";
		probes[1].blk = (struct wire_block){data_chunk, 0, man.root.chunk_size - 100, 4096};
		probes[1].want = WIRE_E_RANGE;
		probes[1].what = "block beyond the chunk";
		probes[2].blk = (struct wire_block){zero_chunk, 0, 0, 4096};
		probes[2].want = WIRE_E_ZERO;
		probes[2].what = "zero chunk";
		probes[3].blk = (struct wire_block){data_chunk, 7, 0, 4096};
		probes[3].want = WIRE_E_GENERATION;
		probes[3].what = "wrong generation";
		nprobes = 4;
		if (run_as_destination(&u) != 0)
			return 1;
		return probe_failures == 0 && probe_next == nprobes ? 0 : 1;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(ctx.base, on_accept, NULL,
	                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	                            (struct sockaddr *)&sin, sizeof(sin));
	if (l == NULL) {
		perror("listen");
		return 1;
	}
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
	f = fopen(port_file, "w");
	if (f == NULL)
		return 1;
	fprintf(f, "%u\n", ntohs(sin.sin_port));
	fclose(f);
	event_base_dispatch(ctx.base);
	return 0;
}
