/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of vmattach's pure parts: finding a drive in query-block's
 * answer (by drive id, device id, QOM path or node name; no medium, no size,
 * not a list, no such drive with the list of drives there are) and a job in
 * query-block-jobs' answer; and the tag naming what a seed makes.
 */
#include <criterion/criterion.h>

#include <string.h>

#include "vmattach.h"

/* As QEMU 7.2 answers query-block for -drive id=disk0 (qcow2) + a -blockdev drive. */
static const char blocks_json[] =
    "[{\"io-status\": \"ok\", \"device\": \"disk0\", \"locked\": false, \"removable\": false,"
    "  \"inserted\": {\"ro\": false, \"drv\": \"qcow2\", \"node-name\": \"#block153\","
    "    \"image\": {\"virtual-size\": 67108864, \"filename\": \"/x/disk.qcow2\","
    "      \"format\": \"qcow2\"}, \"file\": \"/x/disk.qcow2\"},"
    "  \"qdev\": \"/machine/peripheral-anon/device[0]/virtio-backend\", \"type\": \"unknown\"},"
    " {\"device\": \"\", \"locked\": false, \"removable\": false,"
    "  \"inserted\": {\"ro\": true, \"drv\": \"raw\", \"node-name\": \"base\","
    "    \"image\": {\"virtual-size\": 1048576, \"format\": \"raw\"}},"
    "  \"qdev\": \"/machine/peripheral/vd1/virtio-backend\", \"type\": \"unknown\"},"
    " {\"device\": \"cd0\", \"locked\": false, \"removable\": true, \"tray_open\": false,"
    "  \"qdev\": \"cd\", \"type\": \"unknown\"}]";

static json_t *load(const char *s)
{
	json_error_t je;
	json_t *v = json_loads(s, 0, &je);

	cr_assert(v != NULL, "%s", je.text);
	return v;
}

Test(vmattach, find_drive_by_every_name)
{
	json_t *b = load(blocks_json);
	struct vmattach_drive d;
	char err[512];

	cr_assert(vmattach_find_drive(b, "disk0", &d, err, sizeof(err)) == 0, "%s", err);
	cr_assert_str_eq(d.node, "#block153");
	cr_assert_str_eq(d.device, "disk0");
	cr_assert_str_eq(d.format, "qcow2");
	cr_assert(d.size == 67108864 && !d.ro);
	cr_assert(vmattach_find_drive(b, "#block153", &d, err, sizeof(err)) == 0);
	cr_assert_str_eq(d.device, "disk0");
	/* A -blockdev drive: no BlockBackend name; by its device id, its QOM path or node. */
	cr_assert(vmattach_find_drive(b, "vd1", &d, err, sizeof(err)) == 0, "%s", err);
	cr_assert_str_eq(d.node, "base");
	cr_assert_str_eq(d.device, "");
	cr_assert(d.ro && d.size == 1048576);
	cr_assert(vmattach_find_drive(b, "/machine/peripheral/vd1/virtio-backend", &d, err,
	                              sizeof(err)) == 0);
	cr_assert(vmattach_find_drive(b, "base", &d, err, sizeof(err)) == 0);
	/* A prefix of a device id is not that device; "" matches no unnamed drive. */
	cr_assert(vmattach_find_drive(b, "vd", &d, err, sizeof(err)) != 0);
	cr_assert(vmattach_find_drive(b, "", &d, err, sizeof(err)) != 0);
	json_decref(b);
}

Test(vmattach, find_drive_errors)
{
	json_t *b = load(blocks_json);
	struct vmattach_drive d;
	char err[512];

	cr_assert(vmattach_find_drive(b, "nope", &d, err, sizeof(err)) != 0);
	cr_assert(strstr(err, "no drive nope") != NULL, "%s", err);
	cr_assert(strstr(err, "[drive disk0, ") != NULL, "%s", err);
	cr_assert(strstr(err, "node base]") != NULL, "%s", err);
	cr_assert(vmattach_find_drive(b, "cd0", &d, err, sizeof(err)) != 0);
	cr_assert(strstr(err, "no medium") != NULL, "%s", err);
	/* A short buffer still ends in a NUL. */
	cr_assert(vmattach_find_drive(b, "nope", &d, err, 20) != 0);
	cr_assert(strlen(err) < 20);
	json_decref(b);

	const char *bad[] = {
	    "{}",
	    "[1, \"x\", null]",
	    "[{\"device\": \"disk0\", \"inserted\": {\"node-name\": \"n\"}}]",
	    "[{\"device\": \"disk0\", \"inserted\": {\"node-name\": \"n\", \"image\": "
	    "{\"virtual-size\": -5}}}]",
	    "[{\"device\": \"disk0\", \"inserted\": {\"node-name\": \"n\", \"image\": "
	    "{\"virtual-size\": \"64M\"}}}]",
	    "[{\"device\": \"disk0\", \"inserted\": {\"node-name\": 7, \"image\": "
	    "{\"virtual-size\": 512}}}]",
	    "[]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *v = load(bad[i]);

		cr_assert(vmattach_find_drive(v, "disk0", &d, err, sizeof(err)) != 0, "%s", bad[i]);
		cr_assert(err[0] != '\0');
		json_decref(v);
	}
}

Test(vmattach, find_job)
{
	json_t *j = load("[{\"auto-finalize\": true, \"io-status\": \"ok\", \"device\": "
	                 "\"other\", \"len\": 1, \"offset\": 0, \"ready\": false, \"type\": "
	                 "\"backup\", \"status\": \"running\"},"
	                 " {\"device\": \"p2pvbd-0a1b2c3d\", \"len\": 67108864, \"offset\": "
	                 "67108864, \"busy\": false, \"paused\": false, \"speed\": 0, \"ready\": "
	                 "true, \"type\": \"mirror\", \"status\": \"ready\"}]");
	struct vmattach_jobinfo ji;
	char err[256];

	cr_assert(vmattach_find_job(j, "p2pvbd-0a1b2c3d", &ji, err, sizeof(err)) == 0);
	cr_assert(ji.found && ji.ready && ji.len == 67108864 && ji.offset == ji.len);
	cr_assert_str_eq(ji.status, "ready");
	cr_assert(vmattach_find_job(j, "p2pvbd-ffffffff", &ji, err, sizeof(err)) == 0);
	cr_assert(!ji.found);
	json_decref(j);

	j = load("[{\"device\": \"p2pvbd-0a1b2c3d\", \"len\": -1, \"offset\": \"x\", \"ready\": "
	         "1, \"status\": 5, \"error\": \"Input/output error\"}]");
	cr_assert(vmattach_find_job(j, "p2pvbd-0a1b2c3d", &ji, err, sizeof(err)) == 0);
	cr_assert(ji.found && !ji.ready && ji.len == 0 && ji.offset == 0);
	cr_assert_str_eq(ji.status, "");
	cr_assert_str_eq(ji.error, "Input/output error");
	json_decref(j);

	j = load("{\"return\": []}");
	cr_assert(vmattach_find_job(j, "p2pvbd-0a1b2c3d", &ji, err, sizeof(err)) != 0);
	json_decref(j);
}

Test(vmattach, tag)
{
	char a[VMATTACH_TAG_LEN + 1], b[VMATTACH_TAG_LEN + 1], c[VMATTACH_TAG_LEN + 1];

	vmattach_tag("/nonexistent/vm.qmp", "disk0", a);
	vmattach_tag("/nonexistent/vm.qmp", "disk0", b);
	vmattach_tag("/nonexistent/vm.qmp", "disk1", c);
	cr_assert(strlen(a) == VMATTACH_TAG_LEN);
	cr_assert_str_eq(a, b);
	cr_assert_str_neq(a, c);
	/* The path and the drive are kept apart: ("x/a", "b") is not ("x/", "ab"). */
	vmattach_tag("/nonexistent/vm.qmp", "1", b);
	vmattach_tag("/nonexistent/vm.qm", "p1", c);
	cr_assert_str_neq(b, c);
}
