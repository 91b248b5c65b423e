/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of pivot_plan_make: the drive's nodes found in QEMU's answers
 * (shaped as QEMU 7.2 gives them for -drive if=none,id=disk0,format=raw,
 * file=nbd:unix:PATH and a virtio-blk -device) by -drive id, -device id and
 * node name, through a throttle filter; the raw node's settings kept; and
 * refused: a drive on nbd without a format node, a qcow2 or file drive, a
 * drive on another NBD server, an unknown drive, malformed answers.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "pivot.h"

/* query-block, query-named-block-nodes and x-debug-query-block-graph of one QEMU. */
static const char *block_json =
    "[{\"device\": \"disk0\", \"qdev\": \"/machine/peripheral/vd0/virtio-backend\","
    "  \"inserted\": {\"node-name\": \"#block143\", \"drv\": \"raw\","
    "                 \"file\": \"nbd+unix://?socket=/tmp/t/dst.sock\"}},"
    " {\"device\": \"ctl0\", \"qdev\": \"/machine/peripheral-anon/device[1]/virtio-backend\","
    "  \"inserted\": {\"node-name\": \"#block312\", \"drv\": \"raw\"}},"
    " {\"device\": \"\", \"qdev\": \"/machine/peripheral/vd9/virtio-backend\","
    "  \"inserted\": {\"node-name\": \"thr0\", \"drv\": \"throttle\"}},"
    " {\"device\": \"cd0\", \"qdev\": \"/machine/peripheral-anon/device[2]\"}]";

static const char *nodes_json =
    "[{\"node-name\": \"#block143\", \"drv\": \"raw\", \"ro\": false,"
    "  \"file\": \"nbd+unix://?socket=/tmp/t/dst.sock\", \"detect_zeroes\": \"unmap\","
    "  \"cache\": {\"writeback\": true, \"direct\": true, \"no-flush\": false}},"
    " {\"node-name\": \"#block021\", \"drv\": \"nbd\", \"ro\": false,"
    "  \"file\": \"nbd+unix://?socket=/tmp/t/dst.sock\", \"detect_zeroes\": \"off\","
    "  \"cache\": {\"writeback\": true, \"direct\": false, \"no-flush\": false}},"
    " {\"node-name\": \"#block312\", \"drv\": \"raw\", \"ro\": true, \"file\": \"/tmp/t/ctl.img\","
    "  \"detect_zeroes\": \"off\", \"cache\": {\"writeback\": true, \"direct\": false, "
    "  \"no-flush\": true}},"
    " {\"node-name\": \"#block290\", \"drv\": \"file\", \"ro\": true, \"file\": "
    "\"/tmp/t/ctl.img\"},"
    " {\"node-name\": \"thr0\", \"drv\": \"throttle\", \"ro\": false, \"file\": \"x\"},"
    " {\"node-name\": \"fmt9\", \"drv\": \"raw\", \"ro\": false,"
    "  \"file\": \"nbd://127.0.0.1:10809\", \"detect_zeroes\": \"off\","
    "  \"cache\": {\"writeback\": true, \"direct\": false, \"no-flush\": false}},"
    " {\"node-name\": \"nbd9\", \"drv\": \"nbd\", \"ro\": false, \"file\": "
    "\"nbd://127.0.0.1:10809\"},"
    " {\"node-name\": \"bare\", \"drv\": \"nbd\", \"ro\": false, \"file\": \"nbd://127.0.0.1:1\"}]";

static const char *graph_json =
    "{\"nodes\": [{\"id\": 1, \"type\": \"block-backend\", \"name\": \"disk0\"},"
    "             {\"id\": 2, \"type\": \"block-driver\", \"name\": \"#block143\"},"
    "             {\"id\": 3, \"type\": \"block-driver\", \"name\": \"#block021\"},"
    "             {\"id\": 4, \"type\": \"block-backend\", \"name\": \"ctl0\"},"
    "             {\"id\": 5, \"type\": \"block-driver\", \"name\": \"#block312\"},"
    "             {\"id\": 6, \"type\": \"block-driver\", \"name\": \"#block290\"},"
    "             {\"id\": 7, \"type\": \"block-driver\", \"name\": \"thr0\"},"
    "             {\"id\": 8, \"type\": \"block-driver\", \"name\": \"fmt9\"},"
    "             {\"id\": 9, \"type\": \"block-driver\", \"name\": \"nbd9\"},"
    "             {\"id\": 10, \"type\": \"block-driver\", \"name\": \"bare\"}],"
    " \"edges\": [{\"parent\": 1, \"child\": 2, \"name\": \"root\"},"
    "             {\"parent\": 2, \"child\": 3, \"name\": \"file\"},"
    "             {\"parent\": 4, \"child\": 5, \"name\": \"root\"},"
    "             {\"parent\": 5, \"child\": 6, \"name\": \"file\"},"
    "             {\"parent\": 7, \"child\": 8, \"name\": \"file\"},"
    "             {\"parent\": 8, \"child\": 9, \"name\": \"file\"}]}";

static json_t *block, *nodes, *graph;

static void setup(void)
{
	json_error_t je;

	block = json_loads(block_json, 0, &je);
	cr_assert(block != NULL, "block: %s", je.text);
	nodes = json_loads(nodes_json, 0, &je);
	cr_assert(nodes != NULL, "nodes: %s", je.text);
	graph = json_loads(graph_json, 0, &je);
	cr_assert(graph != NULL, "graph: %s", je.text);
}

static void teardown(void)
{
	json_decref(block);
	json_decref(nodes);
	json_decref(graph);
}

TestSuite(pivot, .init = setup, .fini = teardown);

static int plan(const char *drive, const char *hint, struct pivot_plan *p, char *err)
{
	return pivot_plan_make(drive, block, nodes, graph, hint, p, err, 512);
}

Test(pivot, by_drive_id)
{
	struct pivot_plan p;
	char err[512] = "";

	cr_assert_eq(plan("disk0", "dst.sock", &p, err), 0, "%s", err);
	cr_assert_str_eq(p.fmt, "#block143");
	cr_assert_str_eq(p.nbd, "#block021");
	cr_assert_str_eq(p.local, "p2pvbd-local-disk0");
	cr_assert_str_eq(p.nbd_file, "nbd+unix://?socket=/tmp/t/dst.sock");
	/* The raw node's settings, not the nbd node's. */
	cr_assert_eq(p.read_only, 0);
	cr_assert_eq(p.cache_direct, 1);
	cr_assert_eq(p.cache_no_flush, 0);
	cr_assert_str_eq(p.detect_zeroes, "unmap");
	/* QEMU named the raw node (-drive): QEMU will not reopen it, so the mirror way. */
	cr_assert_eq(p.mirror, 1);
	cr_assert_str_eq(p.job, "p2pvbd-pivot-disk0");
	cr_assert_str_eq(p.drive, "disk0");
}

Test(pivot, by_device_id_and_qom_path)
{
	struct pivot_plan p;
	char err[512] = "";

	cr_assert_eq(plan("vd0", NULL, &p, err), 0, "%s", err);
	cr_assert_str_eq(p.fmt, "#block143");
	cr_assert_eq(plan("/machine/peripheral/vd0/virtio-backend", NULL, &p, err), 0, "%s", err);
	cr_assert_str_eq(p.nbd, "#block021");
	/* "vd" is not "vd0". */
	cr_assert_eq(plan("vd", NULL, &p, err), -1);
	cr_assert(strstr(err, "no drive, device or node named vd") != NULL, "%s", err);
	cr_assert(strstr(err, "disk0") != NULL, "the drives QEMU has are listed: %s", err);
}

Test(pivot, by_node_name_and_through_a_filter)
{
	struct pivot_plan p;
	char err[512] = "";

	cr_assert_eq(plan("fmt9", ":10809", &p, err), 0, "%s", err);
	cr_assert_str_eq(p.nbd, "nbd9");
	cr_assert_str_eq(p.detect_zeroes, "off");
	/* A device on a throttle filter over the raw node. */
	cr_assert_eq(plan("vd9", ":10809", &p, err), 0, "%s", err);
	cr_assert_str_eq(p.fmt, "fmt9");
	cr_assert_str_eq(p.nbd, "nbd9");
	cr_assert_str_eq(p.local, "p2pvbd-local-vd9");
	/* Named by the user (-blockdev): the reopen way. */
	cr_assert_eq(p.mirror, 0);
}

/* A filter over a raw node QEMU named: neither way works (the mirror would drop the filter). */
Test(pivot, filter_over_an_unnamed_raw_node)
{
	struct pivot_plan p;
	char err[512] = "";
	json_t *b =
	    json_loads("[{\"device\": \"d1\", \"inserted\": {\"node-name\": \"thr1\"}}]", 0, NULL);
	json_t *n =
	    json_loads("[{\"node-name\": \"thr1\", \"drv\": \"throttle\"},"
	               " {\"node-name\": \"#block7\", \"drv\": \"raw\"},"
	               " {\"node-name\": \"#block8\", \"drv\": \"nbd\", \"file\": \"nbd://x\"}]",
	               0, NULL);
	json_t *g = json_loads(
	    "{\"nodes\": [{\"id\": 1, \"type\": \"block-driver\", \"name\": \"thr1\"},"
	    "             {\"id\": 2, \"type\": \"block-driver\", \"name\": \"#block7\"},"
	    "             {\"id\": 3, \"type\": \"block-driver\", \"name\": \"#block8\"}],"
	    " \"edges\": [{\"parent\": 1, \"child\": 2, \"name\": \"file\"},"
	    "             {\"parent\": 2, \"child\": 3, \"name\": \"file\"}]}",
	    0, NULL);

	cr_assert(b != NULL && n != NULL && g != NULL);
	cr_assert_eq(pivot_plan_make("d1", b, n, g, NULL, &p, err, sizeof(err)), -1);
	cr_assert(strstr(err, "name it (node-name=...)") != NULL, "%s", err);
	json_decref(b);
	json_decref(n);
	json_decref(g);
}

Test(pivot, refused)
{
	struct pivot_plan p;
	char err[512] = "";

	/* Not our export. */
	cr_assert_eq(plan("disk0", "other.sock", &p, err), -1);
	cr_assert(strstr(err, "not this fetch's export") != NULL, "%s", err);
	/* nbd with no format node above it: nothing to reopen. */
	cr_assert_eq(plan("bare", NULL, &p, err), -1);
	cr_assert(strstr(err, "no format node") != NULL, "%s", err);
	/* A raw drive on a file, not on NBD. */
	cr_assert_eq(plan("ctl0", NULL, &p, err), -1);
	cr_assert(strstr(err, "not on fetch's NBD export") != NULL, "%s", err);
	/* A drive with no medium. */
	cr_assert_eq(plan("cd0", NULL, &p, err), -1);
	cr_assert(strstr(err, "no medium") != NULL, "%s", err);
	/* Not raw: a file node itself. */
	cr_assert_eq(plan("#block290", NULL, &p, err), -1);
	cr_assert(strstr(err, "is file, not raw") != NULL, "%s", err);
}

Test(pivot, long_and_odd_drive_names)
{
	struct pivot_plan p;
	json_t *b = json_loads("[{\"device\": \"a drive/with:odd chars and a long name\","
	                       "  \"inserted\": {\"node-name\": \"#block143\"}}]",
	                       0, NULL);
	char err[512] = "";

	cr_assert_eq(pivot_plan_make("a drive/with:odd chars and a long name", b, nodes, graph,
	                             NULL, &p, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(strlen(p.local), PIVOT_NAME_LEN - 1);
	cr_assert_str_eq(p.local, "p2pvbd-local-a_drive_with_odd_c");
	json_decref(b);
}

Test(pivot, malformed_answers)
{
	struct pivot_plan p;
	char err[512] = "";
	json_t *obj = json_object(), *arr = json_array();
	json_t *bad_graph =
	    json_loads("{\"nodes\": 5, \"edges\": [1, {\"parent\": \"x\"}]}", 0, NULL);
	json_t *bad_nodes =
	    json_loads("[1, null, {\"node-name\": 5}, {\"node-name\": \"#block143\","
	               " \"drv\": 7}]",
	               0, NULL);

	cr_assert_eq(pivot_plan_make("disk0", obj, nodes, graph, NULL, &p, err, sizeof(err)), -1);
	cr_assert_eq(pivot_plan_make("disk0", block, obj, graph, NULL, &p, err, sizeof(err)), -1);
	cr_assert_eq(pivot_plan_make("disk0", block, nodes, arr, NULL, &p, err, sizeof(err)), -1);
	cr_assert_eq(pivot_plan_make("disk0", block, nodes, bad_graph, NULL, &p, err, sizeof(err)),
	             -1);
	cr_assert(strstr(err, "no file child") != NULL, "%s", err);
	cr_assert_eq(pivot_plan_make("disk0", block, bad_nodes, graph, NULL, &p, err, sizeof(err)),
	             -1);
	cr_assert(strstr(err, "not in query-named-block-nodes") != NULL, "%s", err);
	/* A cycle of filters ends. */
	json_t *cyc_nodes = json_loads("[{\"node-name\": \"t1\", \"drv\": \"throttle\"},"
	                               " {\"node-name\": \"t2\", \"drv\": \"throttle\"}]",
	                               0, NULL);
	json_t *cyc_graph =
	    json_loads("{\"nodes\": [{\"id\": 1, \"type\": \"block-driver\", \"name\": \"t1\"},"
	               "             {\"id\": 2, \"type\": \"block-driver\", \"name\": \"t2\"}],"
	               " \"edges\": [{\"parent\": 1, \"child\": 2, \"name\": \"file\"},"
	               "             {\"parent\": 2, \"child\": 1, \"name\": \"file\"}]}",
	               0, NULL);
	cr_assert_eq(pivot_plan_make("t1", arr, cyc_nodes, cyc_graph, NULL, &p, err, sizeof(err)),
	             -1);
	cr_assert(strstr(err, "not raw") != NULL, "%s", err);
	json_decref(cyc_nodes);
	json_decref(cyc_graph);
	json_decref(bad_graph);
	json_decref(bad_nodes);
	json_decref(obj);
	json_decref(arr);
}
