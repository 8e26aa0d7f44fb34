/*
 * seccomp.c
 *		The system call filter of local sandboxes, built with libseccomp.
 *
 * A shell workload needs files, processes, threads, pipes, sockets and
 * signals.  It never needs new namespaces or mounts, io_uring, the kernel's
 * keyrings, another process's memory or registers, or the kernel's module,
 * BPF, performance-counter and administration interfaces: large kernel code
 * that a sandboxed process would otherwise reach, and where most of the
 * kernel's recent privilege escalations were found.  Those calls fail with
 * EPERM (what an unprivileged process gets for most of them anyway), or with
 * ENOSYS where programs probe an interface and fall back when the kernel lacks
 * it: clone3, so that libc falls back to clone, whose flags a filter can see
 * (clone3 passes them in memory); io_uring, so that libuv and liburing use
 * epoll and ordinary reads.  Everything else is allowed.
 *
 * The program is compiled once per process into a sealed memfd, and bwrap
 * gets it with --seccomp FD.  bwrap reads the descriptor to EOF in the
 * sandbox's setup process, which may run after the next sandbox was spawned,
 * so every sandbox gets a descriptor of its own (a new open file description
 * at offset 0, opened through /proc/self/fd) rather than a shared one that
 * would have to be rewound.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "local/seccomp.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* One system call the filter denies outright, and the error it returns. */
typedef struct SbDenied
{
	const char *name;
	int			err;
} SbDenied;

static const SbDenied denied[] = {
	/* Interfaces that programs probe, falling back when they are missing. */
	{"clone3", ENOSYS},
	{"io_uring_setup", ENOSYS},
	{"io_uring_enter", ENOSYS},
	{"io_uring_register", ENOSYS},
	/* Namespaces and mounts: the sandbox's layout is fixed. */
	{"setns", EPERM},
	{"mount", EPERM},
	{"umount", EPERM},
	{"umount2", EPERM},
	{"pivot_root", EPERM},
	{"move_mount", EPERM},
	{"open_tree", EPERM},
	{"fsopen", EPERM},
	{"fsconfig", EPERM},
	{"fsmount", EPERM},
	{"fspick", EPERM},
	{"mount_setattr", EPERM},
	/* The kernel's keyrings. */
	{"add_key", EPERM},
	{"request_key", EPERM},
	{"keyctl", EPERM},
	/* Other processes' memory, registers and descriptors. */
	{"ptrace", EPERM},
	{"process_vm_readv", EPERM},
	{"process_vm_writev", EPERM},
	{"process_madvise", EPERM},
	{"pidfd_getfd", EPERM},
	{"kcmp", EPERM},
	/* Loading code into the kernel, or watching it. */
	{"bpf", EPERM},
	{"perf_event_open", EPERM},
	{"userfaultfd", EPERM},
	{"init_module", EPERM},
	{"finit_module", EPERM},
	{"delete_module", EPERM},
	{"create_module", EPERM},
	{"query_module", EPERM},
	{"get_kernel_syms", EPERM},
	{"kexec_load", EPERM},
	{"kexec_file_load", EPERM},
	{"lookup_dcookie", EPERM},
	/* Administration of the host. */
	{"reboot", EPERM},
	{"swapon", EPERM},
	{"swapoff", EPERM},
	{"acct", EPERM},
	{"quotactl", EPERM},
	{"quotactl_fd", EPERM},
	{"syslog", EPERM},
	{"settimeofday", EPERM},
	{"clock_settime", EPERM},
	{"clock_adjtime", EPERM},
	{"open_by_handle_at", EPERM},
	{"nfsservctl", EPERM},
	{"vhangup", EPERM},
	{"iopl", EPERM},
	{"ioperm", EPERM},
	{"uselib", EPERM},
	{"vm86", EPERM},
	{"vm86old", EPERM},
};

/* The namespace flags of clone and unshare; CLONE_NEWTIME is a signal number for clone. */
static const unsigned long clone_ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
	CLONE_NEWPID, CLONE_NEWNET
};

/* Terminal ioctls that push input into, or drive, a terminal. */
static const unsigned long denied_ioctls[] = {TIOCSTI, TIOCLINUX};

static int	program_fd = -1;	/* the sealed memfd holding the compiled program */

/* deny_if adds "name fails with err when argument arg & mask == value". */
static int
deny_if(scmp_filter_ctx ctx, const char *name, int err, unsigned int arg,
		uint64_t mask, uint64_t value)
{
	int			nr = seccomp_syscall_resolve_name(name);

	if (nr == __NR_SCMP_ERROR)
		return 0;
	return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 1,
							SCMP_CMP(arg, SCMP_CMP_MASKED_EQ, mask, value));
}

/* add_rules adds the filter's rules; returns 0 or a negative errno, *step says where. */
static int
add_rules(scmp_filter_ctx ctx, const char **step)
{
	uint32_t	native = seccomp_arch_native();
	/* clone's flags are its first argument, but on s390 its second */
	unsigned int clone_arg = (native == SCMP_ARCH_S390 || native == SCMP_ARCH_S390X) ? 1 : 0;
	int			rc;

	/*
	 * The compatibility ABIs get the same rules; a call from an ABI not in
	 * the filter kills the process.
	 */
	if (native == SCMP_ARCH_X86_64)
	{
		(void) seccomp_arch_add(ctx, SCMP_ARCH_X86);
		(void) seccomp_arch_add(ctx, SCMP_ARCH_X32);
	}
	else if (native == SCMP_ARCH_AARCH64)
		(void) seccomp_arch_add(ctx, SCMP_ARCH_ARM);

	for (int i = 0; i < (int) lengthof(denied); i++)
	{
		int			nr = seccomp_syscall_resolve_name(denied[i].name);

		if (nr == __NR_SCMP_ERROR)
			continue;			/* unknown to this libseccomp: no such call here */
		*step = denied[i].name;
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(denied[i].err), nr, 0)) < 0)
			return rc;
	}
	for (int i = 0; i < (int) lengthof(clone_ns_flags); i++)
	{
		*step = "clone";
		if ((rc = deny_if(ctx, "clone", EPERM, clone_arg, clone_ns_flags[i], clone_ns_flags[i])) < 0)
			return rc;
		*step = "unshare";
		if ((rc = deny_if(ctx, "unshare", EPERM, 0, clone_ns_flags[i], clone_ns_flags[i])) < 0)
			return rc;
	}
	*step = "unshare";
	if ((rc = deny_if(ctx, "unshare", EPERM, 0, CLONE_NEWTIME, CLONE_NEWTIME)) < 0)
		return rc;
	/* the kernel reads an ioctl's request as 32 bits: compare only those */
	for (int i = 0; i < (int) lengthof(denied_ioctls); i++)
	{
		*step = "ioctl";
		if ((rc = deny_if(ctx, "ioctl", EPERM, 1, 0xFFFFFFFFu, denied_ioctls[i])) < 0)
			return rc;
	}
	return 0;
}

/* build_program compiles the filter into a sealed memfd and returns it. */
static int
build_program(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	const char *step = "seccomp_init";
	int			rc = ctx == NULL ? -ENOMEM : 0;
	int			fd = -1;

	if (rc == 0)
	{
		/* a binary tree of system call numbers rather than a linear list */
		(void) seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
		rc = add_rules(ctx, &step);
	}
	if (rc == 0)
	{
		step = "memfd_create";
		fd = memfd_create("cloudrun_sandbox_seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		rc = fd < 0 ? -errno : 0;
	}
	if (rc == 0)
	{
		step = "seccomp_export_bpf";
		rc = seccomp_export_bpf(ctx, fd);
	}
	if (rc == 0)
	{
		step = "sealing the program";
		if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
			rc = -errno;
	}
	if (ctx != NULL)
		seccomp_release(ctx);
	if (rc != 0)
	{
		if (fd >= 0)
			close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not build the sandbox's system call filter"),
				 errdetail("%s failed: %s", step, strerror(-rc)),
				 errhint("The local backend needs libseccomp and a kernel with seccomp filters "
						 "(CONFIG_SECCOMP_FILTER).")));
	}
	return fd;
}

/*
 * sb_seccomp_open returns a new descriptor, numbered min_fd or above and
 * close-on-exec, from which one bwrap reads the compiled filter; the caller
 * closes it once bwrap has started.
 */
int
sb_seccomp_open(int min_fd)
{
	char		path[64];
	int			fd;

	if (program_fd < 0)
		program_fd = build_program();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", program_fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fd < min_fd)
	{
		int			moved = fcntl(fd, F_DUPFD_CLOEXEC, min_fd);
		int			save = errno;

		close(fd);
		fd = moved;
		errno = save;
	}
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not open the sandbox's system call filter: %m")));
	return fd;
}
