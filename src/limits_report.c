/*
 * limits_report.c
 *		What bounds a sandbox user, for sandbox.worker_status().limits: one
 *		line per limit, "<setting>: <value> <what it bounds>", and one for
 *		per-role cgroups ("cgroups: in force ..." or "cgroups: not in force:
 *		<why>").
 *
 * Settings that other parts of the extension define are read by name (a
 * setting this build does not have reads "not set"), so that this report
 * depends on nothing but their names.
 */
#include "cloudrun_sandbox.h"

#include <fcntl.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/acl.h"
#include "utils/guc.h"

#include "local/cgroup.h"

/*
 * setting returns a setting's value as SHOW shows it (with its unit), NULL if
 * there is no such setting, or "(hidden)" for one the caller may not read.
 */
static const char *
setting(const char *name)
{
	if (GetConfigOption(name, true, false) == NULL)
		return NULL;
	if ((GetConfigOptionFlags(name, true) & GUC_SUPERUSER_ONLY) &&
		!has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_SETTINGS))
		return "(hidden)";
	return GetConfigOptionByName(name, NULL, true);
}

/* add appends one line "<name>: <value> <scope>" ("not set" when the setting is absent). */
static List *
add(List *lines, const char *name, const char *scope)
{
	const char *value = setting(name);

	if (value == NULL)
		return lappend(lines, psprintf("%s: not set", name));
	return lappend(lines, psprintf("%s: %s %s", name, value, scope));
}

/* usable_program says whether a program is there to run: NULL, or why not. */
static char *
usable_program(const char *path)
{
	return access(path, X_OK) == 0 ? NULL : psprintf("%s: %m", path);
}

/*
 * disk_quota_line describes cloudrun_sandbox.local_disk_quota and whether its
 * mechanism (a fuse2fs file system per session) can work on this host.
 */
static char *
disk_quota_line(void)
{
	const char *value = setting("cloudrun_sandbox.local_disk_quota");
	char	   *why = NULL;
	int			fd;

	if (value == NULL)
		return "cloudrun_sandbox.local_disk_quota: not set";
	/* The programs the settings name (by name, like the rest of this report). */
	for (int i = 0; i < 4 && why == NULL; i++)
	{
		static const char *const programs[4] = {"cloudrun_sandbox.fuse2fs_path",
			"cloudrun_sandbox.fusermount_path", "cloudrun_sandbox.mkfs_path",
		"cloudrun_sandbox.e2fsck_path"};
		const char *path = GetConfigOption(programs[i], true, false);

		if (path != NULL)
			why = usable_program(path);
	}
	if (why == NULL)
	{
		fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
		else
			why = psprintf("/dev/fuse: %m");
	}
	return psprintf("cloudrun_sandbox.local_disk_quota: %s per session (fuse2fs: %s%s)", value,
					why ? "not usable: " : "usable", why ? why : "");
}

/* sb_limits_in_force returns the limits in force, a text[] for worker_status(). */
Datum
sb_limits_in_force(void)
{
	List	   *lines = NIL;
	ListCell   *lc;
	Datum	   *items;
	int			n = 0;

	lines = add(lines, "cloudrun_sandbox.max_processes", "processes per sandbox (RLIMIT_NPROC; 0: none)");
	lines = add(lines, "cloudrun_sandbox.memory_limit", "of address space per process (RLIMIT_AS; 0: none)");
	lines = add(lines, "cloudrun_sandbox.file_size_limit", "per file written (RLIMIT_FSIZE; 0: none)");
	lines = add(lines, "cloudrun_sandbox.cpu_time_limit", "of CPU time per process (RLIMIT_CPU; 0: none)");
	lines = add(lines, "cloudrun_sandbox.local_shm_size", "of /dev/shm per sandbox");
	lines = add(lines, "cloudrun_sandbox.max_output_bytes", "of stdout and of stderr kept per command");
	lines = add(lines, "cloudrun_sandbox.max_command_bytes", "per command");
	lines = add(lines, "cloudrun_sandbox.max_background_per_role", "background processes per role (0: no limit)");
	lines = add(lines, "cloudrun_sandbox.max_sandboxes_per_role", "sandboxes at once per role");
	lines = add(lines, "cloudrun_sandbox.local_nice", "niceness of local sandboxes");
	lines = lappend(lines, disk_quota_line());
	lines = add(lines, "cloudrun_sandbox.history_max_bytes_per_role", "of history per role");
	lines = lappend(lines, sb_cgroup_describe(NULL));

	items = palloc(sizeof(Datum) * list_length(lines));
	foreach(lc, lines)
		items[n++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT));
}
