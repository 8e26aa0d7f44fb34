/*
 * cgroup.c
 *		Per-role control groups for local sandboxes: every sandbox of a role
 *		runs in <cloudrun_sandbox.local_cgroup>/role_<oid>, whose memory,
 *		pids and cpu limits bound the total of that role's sandboxes.
 *
 * The server runs as an unprivileged OS user, so it can only use a cgroup
 * subtree an operator delegated to it (README, "Per-role cgroups").  Which
 * cgroup version the setting names is read from /proc/self/mountinfo, never
 * assumed: an absolute path is a cgroup v2 directory; a relative name is
 * looked up in each of the memory, pids and cpu cgroup v1 hierarchies (or,
 * on a host without them, under the cgroup v2 mount).  The worker does it at
 * start-up and logs the outcome; a backend does it at its first sandbox.
 *
 * Before a spawn, sb_cgroup_prepare() makes the role's cgroup (mode 0755) if
 * needed, writes its limits where they differ from the settings, and builds
 * the paths of its cgroup.procs files; after the fork, the child writes "0"
 * (itself) into each with sb_cgroup_join_child() (open, write and close
 * only: async-signal-safe), before it execs bwrap.  Everything bwrap starts
 * then stays inside.  The sandbox never sees /sys/fs/cgroup (bwrap binds no
 * /sys) and has a cgroup namespace of its own, so it can neither raise its
 * limits nor move out.  Once the operator set cloudrun_sandbox.local_cgroup,
 * a sandbox that cannot join its cgroup, or a limit that is set but whose
 * controller is not delegated, fails the command: nothing runs unbounded.
 */
#include "local/cgroup.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/guc.h"
#include "utils/memutils.h"

char	   *sb_local_cgroup = NULL;
int			sb_role_memory_max_mb = 4096;
int			sb_role_pids_max = 1024;
int			sb_role_cpu_weight = 50;

/* The controllers, in this order everywhere below. */
typedef enum CgController
{
	CG_MEMORY,
	CG_PIDS,
	CG_CPU,
	CG_NCONTROLLERS
} CgController;

static const char *const cg_names[CG_NCONTROLLERS] = {"memory", "pids", "cpu"};

/* The cgroup file systems this process sees. */
typedef struct CgMounts
{
	char		v1[CG_NCONTROLLERS][MAXPGPATH]; /* each controller's v1 mount point, or "" */
	char		v2[MAXPGPATH];	/* the first cgroup2 mount point, or "" */
} CgMounts;

/* Where the setting puts role cgroups: per controller, the parent directory. */
typedef struct CgLayout
{
	char		setting[MAXPGPATH]; /* the value of local_cgroup it was made for */
	int			version;		/* 1 or 2; 0 when error is set */
	char		dir[CG_NCONTROLLERS][MAXPGPATH];	/* "" when unavailable: */
	char		why[CG_NCONTROLLERS][256];	/* why */
	char		error[512];		/* the setting as a whole is unusable */
} CgLayout;

static CgLayout cg_layout_cache;
static bool cg_layout_cached = false;
static Oid	cg_next_role = InvalidOid;
static char *cg_logged = NULL;	/* the worker's last logged description */

/* sb_cgroup_define_settings defines the settings of this file; from _PG_init. */
void
sb_cgroup_define_settings(void)
{
	DefineCustomStringVariable("cloudrun_sandbox.local_cgroup",
							   "Delegated cgroup under which each role's local sandboxes get a cgroup.",
							   "Empty: none.  An absolute path is a cgroup v2 directory; a name is "
							   "relative to each cgroup v1 hierarchy (memory, pids, cpu).",
							   &sb_local_cgroup, "", PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.role_memory_max",
							"Memory all local sandboxes of one role may use together (its cgroup); 0 = no limit.",
							NULL, &sb_role_memory_max_mb, 4096, 0, INT_MAX / 2, PGC_SIGHUP,
							GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.role_pids_max",
							"Processes all local sandboxes of one role may have together (its cgroup); 0 = no limit.",
							NULL, &sb_role_pids_max, 1024, 0, 4194304, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cloudrun_sandbox.role_cpu_weight",
							"CPU weight of one role's local sandboxes together (cgroup v2 cpu.weight; 100 is a default group's); 0 = default.",
							"On cgroup v1, cpu.shares = weight * 1024 / 100.",
							&sb_role_cpu_weight, 50, 0, 10000, PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/*
 * sb_cgroup_use_role names the role whose cgroup the next sandbox this
 * process spawns goes into (the background worker spawns for many roles).
 */
void
sb_cgroup_use_role(Oid role)
{
	cg_next_role = role;
}

/*
 * sb_cgroup_role returns the role a sandbox about to be spawned belongs to:
 * in a background process the one sb_cgroup_use_role() named (once), in a
 * backend the current user, who owns every session it can use.
 */
Oid
sb_cgroup_role(void)
{
	Oid			role = cg_next_role;

	cg_next_role = InvalidOid;
	if (!IsBackgroundWorker || !OidIsValid(role))
		role = GetUserId();
	return role;
}

/* unescape_mount decodes mountinfo's octal escapes (\040 for a space) in place. */
static void
unescape_mount(char *s)
{
	char	   *w = s;

	for (char *r = s; *r; r++)
	{
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
			r[3] >= '0' && r[3] <= '7')
		{
			*w++ = (char) ((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		}
		else
			*w++ = *r;
	}
	*w = '\0';
}

/*
 * has_item tells whether a list of items separated by sep (mount options by
 * ',', cgroup.controllers by ' ') has exactly this item.
 */
static bool
has_item(const char *list, const char *item, char sep)
{
	size_t		len = strlen(item);

	for (const char *p = list; p != NULL && *p; p = strchr(p, sep), p = p ? p + 1 : NULL)
		if (strncmp(p, item, len) == 0 && (p[len] == sep || p[len] == '\0' || p[len] == '\n'))
			return true;
	return false;
}

/* read_mounts finds the cgroup file systems in /proc/self/mountinfo. */
static void
read_mounts(CgMounts *m)
{
	FILE	   *f = fopen("/proc/self/mountinfo", "r");
	char		line[4096];

	memset(m, 0, sizeof(*m));
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
	{
		/* id parent major:minor root mount-point options [optional...] - type source super-options */
		char	   *sep = strstr(line, " - ");
		char		point[MAXPGPATH];
		char		type[64];
		char		super[1024];

		if (sep == NULL || sscanf(line, "%*s %*s %*s %*s %1023s", point) != 1 ||
			sscanf(sep + 3, "%63s %*s %1023s", type, super) != 2)
			continue;
		unescape_mount(point);
		if (strcmp(type, "cgroup2") == 0 && m->v2[0] == '\0')
			strlcpy(m->v2, point, MAXPGPATH);
		else if (strcmp(type, "cgroup") == 0)
		{
			for (int c = 0; c < CG_NCONTROLLERS; c++)
				if (m->v1[c][0] == '\0' && has_item(super, cg_names[c], ','))
					strlcpy(m->v1[c], point, MAXPGPATH);
		}
	}
	fclose(f);
}

/* read_small_file reads a small file (a cgroup interface file) into buf; false with errno if not. */
static bool
read_small_file(const char *path, char *buf, size_t len)
{
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t		n;
	int			save;

	if (fd < 0)
		return false;
	do
		n = read(fd, buf, len - 1);
	while (n < 0 && errno == EINTR);
	save = errno;
	close(fd);
	errno = save;
	if (n < 0)
		return false;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return true;
}

/* write_file writes value to a cgroup interface file; false with errno if not. */
static bool
write_file(const char *path, const char *value)
{
	int			fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t		len = (ssize_t) strlen(value);
	ssize_t		n;
	int			save;

	if (fd < 0)
		return false;
	n = write(fd, value, len);
	save = errno;
	if (close(fd) != 0 && n == len)
		return false;
	errno = save;
	return n == len;
}

/* valid_setting checks that the setting's path has no empty, "." or ".." component. */
static bool
valid_setting(const char *s)
{
	const char *p = s[0] == '/' ? s + 1 : s;

	if (*p == '\0' || strlen(s) > MAXPGPATH - 64)
		return false;
	for (;;)
	{
		size_t		len = strcspn(p, "/");

		if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		for (size_t i = 0; i < len; i++)
			if ((unsigned char) p[i] < 0x20)
				return false;
		if (p[len] == '\0')
			return true;
		p += len + 1;
	}
}

/* check_parent tells whether a parent directory can hold role cgroups; why says why not. */
static bool
check_parent(const char *dir, char *why, size_t len)
{
	struct stat st;

	if (stat(dir, &st) != 0)
	{
		snprintf(why, len, "%s: %m", dir);
		return false;
	}
	if (!S_ISDIR(st.st_mode))
	{
		snprintf(why, len, "%s is not a directory", dir);
		return false;
	}
	if (access(dir, W_OK | X_OK) != 0)
	{
		snprintf(why, len, "%s is not writable by this server (owned by uid %d)", dir,
				 (int) st.st_uid);
		return false;
	}
	return true;
}

/*
 * layout_v2 fills a layout whose parent is the cgroup v2 directory dir: each
 * controller is usable if the parent passes it on to its children
 * (cgroup.subtree_control), which is tried when the parent has it.
 */
static void
layout_v2(CgLayout *l, const char *dir)
{
	char		path[MAXPGPATH];
	char		available[512];
	char		enabled[512];
	char		why[256];

	l->version = 2;
	if (!check_parent(dir, why, sizeof(why)))
	{
		snprintf(l->error, sizeof(l->error), "%s", why);
		return;
	}
	snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
	if (!read_small_file(path, available, sizeof(available)))
	{
		snprintf(l->error, sizeof(l->error), "%s: %m (not a cgroup v2 directory)", path);
		return;
	}
	snprintf(path, sizeof(path), "%s/cgroup.subtree_control", dir);
	for (int c = 0; c < CG_NCONTROLLERS; c++)
	{
		if (!read_small_file(path, enabled, sizeof(enabled)))
			enabled[0] = '\0';
		if (!has_item(enabled, cg_names[c], ' '))
		{
			char		plus[16];

			if (!has_item(available, cg_names[c], ' '))
			{
				snprintf(l->why[c], sizeof(l->why[c]), "%s has no %s controller (cgroup.controllers)",
						 dir, cg_names[c]);
				continue;
			}
			snprintf(plus, sizeof(plus), "+%s", cg_names[c]);
			if (!write_file(path, plus))
			{
				snprintf(l->why[c], sizeof(l->why[c]), "could not enable %s in %s: %m",
						 cg_names[c], path);
				continue;
			}
		}
		strlcpy(l->dir[c], dir, MAXPGPATH);
	}
}

/* compute_layout finds where the setting puts role cgroups, or why it cannot. */
static void
compute_layout(CgLayout *l, const char *setting)
{
	CgMounts	m;
	bool		any_v1 = false;

	memset(l, 0, sizeof(*l));
	strlcpy(l->setting, setting, sizeof(l->setting));
	if (!valid_setting(setting))
	{
		snprintf(l->error, sizeof(l->error),
				 "not a cgroup path (an absolute cgroup v2 directory or a relative name, "
				 "without \".\" or \"..\")");
		return;
	}
	read_mounts(&m);
	for (int c = 0; c < CG_NCONTROLLERS; c++)
		any_v1 |= m.v1[c][0] != '\0';
	if (setting[0] == '/')
	{
		size_t		len = strlen(m.v2);

		/* Only a directory inside the cgroup2 mount. */
		if (len == 0 || strncmp(setting, m.v2, len) != 0 || setting[len] != '/')
		{
			snprintf(l->error, sizeof(l->error), "not inside the cgroup v2 file system%s%s",
					 len ? " mounted at " : " (none is mounted)", m.v2);
			return;
		}
		layout_v2(l, setting);
	}
	else if (!any_v1)
	{
		char		dir[MAXPGPATH];

		if (m.v2[0] == '\0')
		{
			snprintf(l->error, sizeof(l->error), "no cgroup file system is mounted");
			return;
		}
		snprintf(dir, sizeof(dir), "%s/%s", m.v2, setting);
		layout_v2(l, dir);
	}
	else
	{
		l->version = 1;
		for (int c = 0; c < CG_NCONTROLLERS; c++)
		{
			char		dir[MAXPGPATH];

			if (m.v1[c][0] == '\0')
			{
				snprintf(l->why[c], sizeof(l->why[c]), "no cgroup v1 hierarchy has the %s controller",
						 cg_names[c]);
				continue;
			}
			snprintf(dir, sizeof(dir), "%s/%s", m.v1[c], setting);
			if (check_parent(dir, l->why[c], sizeof(l->why[c])))
				strlcpy(l->dir[c], dir, MAXPGPATH);
		}
	}
	if (l->error[0] == '\0' && l->dir[CG_MEMORY][0] == '\0' && l->dir[CG_PIDS][0] == '\0' &&
		l->dir[CG_CPU][0] == '\0')
		snprintf(l->error, sizeof(l->error), "%s", l->why[CG_MEMORY]);
	if (l->error[0] != '\0')
		l->version = 0;
}

/*
 * current_layout returns the layout for the setting's current value: the one
 * found before, unless the setting changed or it was unusable (the operator
 * may have fixed the delegation since).
 */
static const CgLayout *
current_layout(void)
{
	if (!cg_layout_cached || strcmp(cg_layout_cache.setting, sb_local_cgroup) != 0 ||
		cg_layout_cache.error[0] != '\0')
	{
		compute_layout(&cg_layout_cache, sb_local_cgroup);
		cg_layout_cached = true;
	}
	return &cg_layout_cache;
}

/* required tells whether a controller's limit is set, so that it must be delegated. */
static bool
required(int c)
{
	switch (c)
	{
		case CG_MEMORY:
			return sb_role_memory_max_mb > 0;
		case CG_PIDS:
			return sb_role_pids_max > 0;
		default:
			return sb_role_cpu_weight > 0;
	}
}

/* set_file writes a limit unless the file already says it; false with errno if it cannot. */
static bool
set_file(const char *dir, const char *file, const char *value, bool missing_ok)
{
	char		path[MAXPGPATH];
	char		now[64];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (read_small_file(path, now, sizeof(now)))
	{
		if (strcmp(now, value) == 0)
			return true;
	}
	else if (missing_ok && errno == ENOENT)
		return true;
	return write_file(path, value);
}

/*
 * set_memory writes a role cgroup's memory limit, swap included (v1: memsw,
 * v2: no swap beyond it).  On v1 the memsw limit may never be below the
 * memory limit, so which goes first depends on the direction.
 */
static bool
set_memory(int version, const char *dir, const char **file)
{
	char		value[32];
	int64		bytes = (int64) sb_role_memory_max_mb * 1024 * 1024;

	if (version == 2)
	{
		if (bytes > 0)
			snprintf(value, sizeof(value), INT64_FORMAT, bytes);
		else
			strlcpy(value, "max", sizeof(value));
		*file = "memory.max";
		if (!set_file(dir, *file, value, false))
			return false;
		*file = "memory.swap.max";
		return set_file(dir, *file, bytes > 0 ? "0" : "max", true);
	}
	else
	{
		char		path[MAXPGPATH];
		char		now[64];
		bool		raising;

		snprintf(value, sizeof(value), INT64_FORMAT, bytes > 0 ? bytes : (int64) -1);
		snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", dir);
		raising = !read_small_file(path, now, sizeof(now)) || bytes <= 0 ||
			strtoll(now, NULL, 10) < bytes;
		for (int step = 0; step < 2; step++)
		{
			*file = (step == 0) == raising ? "memory.memsw.limit_in_bytes" : "memory.limit_in_bytes";
			if (!set_file(dir, *file, value, strcmp(*file, "memory.memsw.limit_in_bytes") == 0))
				return false;
		}
		return true;
	}
}

/* set_limits writes a controller's limit into a role cgroup; false with errno and *file if not. */
static bool
set_limits(int version, int c, const char *dir, const char **file)
{
	char		value[32];

	switch (c)
	{
		case CG_MEMORY:
			return set_memory(version, dir, file);
		case CG_PIDS:
			if (sb_role_pids_max > 0)
				snprintf(value, sizeof(value), "%d", sb_role_pids_max);
			else
				strlcpy(value, "max", sizeof(value));
			*file = "pids.max";
			return set_file(dir, *file, value, false);
		default:
			if (version == 2)
			{
				snprintf(value, sizeof(value), "%d", sb_role_cpu_weight > 0 ? sb_role_cpu_weight : 100);
				*file = "cpu.weight";
			}
			else
			{
				snprintf(value, sizeof(value), "%d",
						 sb_role_cpu_weight > 0 ? Max(2, sb_role_cpu_weight * 1024 / 100) : 1024);
				*file = "cpu.shares";
			}
			return set_file(dir, *file, value, false);
	}
}

/* cgroup_error raises the error of a sandbox that cannot be bounded as configured. */
static void
cgroup_error(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("the sandbox cannot be put into its role's cgroup"),
			 errdetail("cloudrun_sandbox.local_cgroup is \"%s\": %s", sb_local_cgroup, detail),
			 errhint("Delegate that cgroup to the server's operating-system user as the README's "
					 "\"Per-role cgroups\" section says, or set cloudrun_sandbox.local_cgroup to ''.")));
}

/*
 * sb_cgroup_prepare readies role's cgroup for a sandbox about to be spawned:
 * made (mode 0755) if needed, its limits as the settings say, and the
 * cgroup.procs files the child joins in *out (none when cgroups are off).
 * Raises an error when the setting is on but the role's sandbox cannot be
 * bounded by it.
 */
void
sb_cgroup_prepare(Oid role, SbCgroupJoin *out)
{
	const CgLayout *l;

	out->n = 0;
	if (sb_local_cgroup == NULL || sb_local_cgroup[0] == '\0')
		return;
	l = current_layout();
	if (l->error[0] != '\0')
		cgroup_error(l->error);
	for (int c = 0; c < CG_NCONTROLLERS; c++)
	{
		char		dir[MAXPGPATH];
		char		procs[MAXPGPATH];
		const char *file = NULL;
		bool		seen = false;

		if (l->dir[c][0] == '\0')
		{
			if (required(c))
				cgroup_error(psprintf("the %s controller is not delegated: %s", cg_names[c],
									  l->why[c]));
			continue;
		}
		snprintf(dir, sizeof(dir), "%s/role_%u", l->dir[c], role);
		if (mkdir(dir, 0755) == 0)
			(void) chmod(dir, 0755);	/* past the server's umask */
		else if (errno != EEXIST)
			cgroup_error(psprintf("could not create %s: %m", dir));
		if (!set_limits(l->version, c, dir, &file))
			cgroup_error(psprintf("could not write %s/%s: %m", dir, file));
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", dir);
		/* One file per hierarchy (v2: one for all; v1: co-mounted controllers). */
		for (int i = 0; i < out->n; i++)
			seen |= strcmp(out->procs[i], procs) == 0;
		if (!seen)
			strlcpy(out->procs[out->n++], procs, MAXPGPATH);
	}
}

/*
 * sb_cgroup_join_child moves the calling process into the cgroups of join.
 * Called between fork and exec: async-signal-safe (open, write, close).
 * Returns 0, or -1 - i with errno set when join->procs[i] failed.
 */
int
sb_cgroup_join_child(const SbCgroupJoin *join)
{
	for (int i = 0; i < join->n; i++)
	{
		int			fd = open(join->procs[i], O_WRONLY | O_CLOEXEC);
		int			save;

		if (fd < 0)
			return -1 - i;
		if (write(fd, "0", 1) != 1)
		{
			save = errno;
			close(fd);
			errno = save;
			return -1 - i;
		}
		close(fd);
	}
	return 0;
}

/* describe_host says what the host has, for a description of cgroups not in force. */
static void
describe_host(StringInfo buf)
{
	CgMounts	m;
	bool		any = false;

	read_mounts(&m);
	for (int c = 0; c < CG_NCONTROLLERS; c++)
	{
		struct stat st;

		if (m.v1[c][0] == '\0')
			continue;
		appendStringInfo(buf, "%s%s", any ? ", " : "; host: cgroup v1 hierarchies ", cg_names[c]);
		if (stat(m.v1[c], &st) == 0)
			appendStringInfo(buf, " (%s, %s)", m.v1[c],
							 st.st_uid == 0 ? "owned by root" : "not owned by root");
		any = true;
	}
	if (m.v2[0] != '\0')
	{
		char		path[MAXPGPATH];
		char		controllers[512];

		snprintf(path, sizeof(path), "%s/cgroup.controllers", m.v2);
		if (!read_small_file(path, controllers, sizeof(controllers)))
			controllers[0] = '\0';
		appendStringInfo(buf, "%scgroup v2 at %s (controllers: %s)", any ? "; " : "; host: ",
						 m.v2, controllers[0] ? controllers : "none");
		any = true;
	}
	if (!any)
		appendStringInfoString(buf, "; host: no cgroup file system mounted");
}

/*
 * sb_cgroup_describe says whether per-role cgroups are in force, with which
 * version, controllers, parent and limits, or why not; *in_force (unless
 * NULL) gets the answer.  A palloc'd string that begins "cgroups: ".
 */
char *
sb_cgroup_describe(bool *in_force)
{
	StringInfoData buf;
	const CgLayout *l;
	bool		ok = false;

	initStringInfo(&buf);
	if (sb_local_cgroup == NULL || sb_local_cgroup[0] == '\0')
	{
		appendStringInfoString(&buf, "cgroups: not in force: cloudrun_sandbox.local_cgroup is empty");
		describe_host(&buf);
	}
	else if ((l = current_layout())->error[0] != '\0')
		appendStringInfo(&buf, "cgroups: not in force: cloudrun_sandbox.local_cgroup \"%s\": %s "
						 "(local sandboxes cannot start)", sb_local_cgroup, l->error);
	else
	{
		StringInfoData missing;
		bool		first = true;
		const char *parent = sb_local_cgroup;

		initStringInfo(&missing);
		for (int c = 0; c < CG_NCONTROLLERS; c++)
			if (l->dir[c][0] == '\0' && required(c))
				appendStringInfo(&missing, "; %s: %s", cg_names[c], l->why[c]);
		if (missing.len > 0)
			appendStringInfo(&buf, "cgroups: not in force: cloudrun_sandbox.local_cgroup \"%s\"%s "
							 "(local sandboxes cannot start)", sb_local_cgroup, missing.data);
		else
		{
			ok = true;
			appendStringInfo(&buf, "cgroups: in force: cgroup v%d, controllers ", l->version);
			for (int c = 0; c < CG_NCONTROLLERS; c++)
				if (l->dir[c][0] != '\0')
				{
					appendStringInfo(&buf, "%s%s", first ? "" : " ", cg_names[c]);
					first = false;
				}
			for (int c = 0; c < CG_NCONTROLLERS; c++)
				if (l->version == 2 && l->dir[c][0] != '\0')
					parent = l->dir[c];
			appendStringInfo(&buf, ", parent %s", parent);
			appendStringInfo(&buf, ", per role: memory %s, pids %s, cpu weight %s",
							 sb_role_memory_max_mb > 0 && l->dir[CG_MEMORY][0] ?
							 psprintf("%dMB", sb_role_memory_max_mb) : "no limit",
							 sb_role_pids_max > 0 && l->dir[CG_PIDS][0] ?
							 psprintf("%d", sb_role_pids_max) : "no limit",
							 sb_role_cpu_weight > 0 && l->dir[CG_CPU][0] ?
							 psprintf("%d", sb_role_cpu_weight) : "default");
		}
	}
	if (in_force != NULL)
		*in_force = ok;
	return buf.data;
}

/*
 * sb_cgroup_log_if_changed logs, once per change, whether cgroups are in
 * force; the background worker calls it at start-up and after each reload.
 */
void
sb_cgroup_log_if_changed(void)
{
	char	   *now = sb_cgroup_describe(NULL);

	if (cg_logged != NULL && strcmp(cg_logged, now) == 0)
	{
		pfree(now);
		return;
	}
	ereport(LOG, (errmsg("cloudrun_sandbox %s", now)));
	if (cg_logged != NULL)
		pfree(cg_logged);
	cg_logged = MemoryContextStrdup(TopMemoryContext, now);
	pfree(now);
}
