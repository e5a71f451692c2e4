/*
 * tern-launch: executes one precomputed container launch plan inside the guest.
 *
 * The agent (TypeScript) makes every decision and writes a plan file (see
 * README.md next to this file); this program only performs the system calls
 * the plan lists, in a fixed order, and reports on fd 3:
 *   pid <n>        the child is ready (stopped before exec)
 *   started        the child exec'd after "start" arrived on fd 4
 *   error <text>   a step failed (before or during exec)
 *   exit <status>  the child ended: exit code, or 128+signal
 * fd 4 carries commands: "start", "resize <rows> <cols>", "signal <n>".
 *
 * Usage: tern-launch <plan-file>      (static, libc only)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MAX_ITEMS 256
#define STATUS_FD 3
#define CONTROL_FD 4

/* ---------- plan ---------- */

struct mount_op { char *kind, *source, *target, *fstype, *data; unsigned long flags; };
struct ns_join { char *type, *path; int fd; };
struct rlimit_op { int resource; unsigned long long soft, hard; };
struct device_op { char *path; char type; unsigned major, minor; mode_t mode; uid_t uid; gid_t gid; };

static struct {
	int exec_mode, terminal, console, readonly_root, no_new_privs, has_caps, has_oom, has_umask;
	char *cgroup, *cgroup_return, *root, *exec_root, *hostname, *domainname, *cwd;
	int unshare_flags;
	unsigned long propagation;
	struct ns_join joins[8]; int njoins;
	struct mount_op mounts[MAX_ITEMS]; int nmounts;
	struct device_op devices[MAX_ITEMS]; int ndevices;
	char *symlinks[MAX_ITEMS][2]; int nsymlinks;
	char *masked[MAX_ITEMS]; int nmasked;
	char *ropaths[MAX_ITEMS]; int nropaths;
	char *sysctls[MAX_ITEMS][2]; int nsysctls;
	struct rlimit_op rlimits[32]; int nrlimits;
	uid_t uid; gid_t gid; gid_t groups[MAX_ITEMS]; int ngroups;
	mode_t umask_value; int oom_score_adj;
	unsigned short ws_rows, ws_cols;
	uint64_t caps[5]; /* bounding, effective, permitted, inheritable, ambient */
	char *env[MAX_ITEMS + 1]; int nenv;
	char *args[MAX_ITEMS + 2]; int nargs;
	struct sock_filter *seccomp; unsigned short seccomp_len; unsigned seccomp_flags;
} P = { .cwd = "/" };

static void die_status(const char *fmt, ...);

static int ns_flag(const char *t)
{
	if (!strcmp(t, "pid")) return CLONE_NEWPID;
	if (!strcmp(t, "mnt")) return CLONE_NEWNS;
	if (!strcmp(t, "uts")) return CLONE_NEWUTS;
	if (!strcmp(t, "ipc")) return CLONE_NEWIPC;
	if (!strcmp(t, "cgroup")) return CLONE_NEWCGROUP;
	die_status("plan: unknown namespace %s", t);
	return 0;
}

/* Undoes the agent's escaping of a field in place: \\ \t \n. */
static void unescape(char *f)
{
	char *w = f;
	for (char *r = f; *r; r++) {
		if (*r == '\\' && r[1]) {
			r++;
			*w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r;
		} else *w++ = *r;
	}
	*w = 0;
}

/* "seccomp <flags> <hex of struct sock_filter[]>": the agent compiled the filter. */
static void parse_seccomp(const char *flags, char *hex)
{
	size_t len = strlen(hex);
	if (len == 0 || len % (2 * sizeof(struct sock_filter)) || len / 2 / sizeof(struct sock_filter) > BPF_MAXINSNS)
		die_status("plan: seccomp program has a bad length");
	unsigned char *bytes = malloc(len / 2);
	if (!bytes) die_status("plan: seccomp: out of memory");
	for (size_t i = 0; i < len / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) die_status("plan: seccomp program is not hex");
		bytes[i] = v;
	}
	P.seccomp = (struct sock_filter *)bytes; /* little-endian layout, written by the agent */
	P.seccomp_len = len / 2 / sizeof(struct sock_filter);
	P.seccomp_flags = strtoul(flags, NULL, 10);
}

/* Splits the file into lines and the lines into tab-separated fields, in place. */
static void parse_plan(const char *file)
{
	static char buf[1 << 20];
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) die_status("plan: open %s: %s", file, strerror(errno));
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n < 0 || n == sizeof buf - 1) die_status("plan: read %s failed or too large", file);
	buf[n] = 0;
	for (char *line = buf, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next) *next++ = 0;
		char *f[8] = {0}; int nf = 0;
		for (char *p = line; nf < 8; ) {
			f[nf++] = p;
			p = strchr(p, '\t');
			if (!p) break;
			*p++ = 0;
		}
		for (int i = 0; i < nf; i++) unescape(f[i]);
		const char *k = f[0];
#define NEED(c) do { if (nf < (c) + 1) die_status("plan: %s needs %d values", k, c); } while (0)
#define ROOM(cnt, max) do { if ((cnt) >= (max)) die_status("plan: too many %s lines", k); } while (0)
		if (!*k || !strcmp(k, "version")) continue;
		else if (!strcmp(k, "mode")) { NEED(1); P.exec_mode = !strcmp(f[1], "exec"); }
		else if (!strcmp(k, "cgroup")) { NEED(2); P.cgroup = f[1]; P.cgroup_return = f[2]; }
		else if (!strcmp(k, "unshare")) { NEED(1); P.unshare_flags |= ns_flag(f[1]); }
		else if (!strcmp(k, "setns")) { NEED(2); ROOM(P.njoins, 8); P.joins[P.njoins++] = (struct ns_join){ f[1], f[2], -1 }; ns_flag(f[1]); }
		else if (!strcmp(k, "root")) { NEED(1); P.root = f[1]; }
		else if (!strcmp(k, "exec_root")) { NEED(1); P.exec_root = f[1]; }
		else if (!strcmp(k, "propagation")) { NEED(1); P.propagation = strtoul(f[1], NULL, 10); }
		else if (!strcmp(k, "mount")) {
			NEED(6); ROOM(P.nmounts, MAX_ITEMS);
			P.mounts[P.nmounts++] = (struct mount_op){ f[1], f[3], f[4], f[5], f[6], strtoul(f[2], NULL, 10) };
		}
		else if (!strcmp(k, "device")) {
			NEED(7); ROOM(P.ndevices, MAX_ITEMS);
			if (strlen(f[2]) != 1 || !strchr("cbp", f[2][0])) die_status("plan: device %s: bad type %s", f[1], f[2]);
			P.devices[P.ndevices++] = (struct device_op){ f[1], f[2][0], strtoul(f[3], NULL, 10), strtoul(f[4], NULL, 10),
				strtoul(f[5], NULL, 8), strtoul(f[6], NULL, 10), strtoul(f[7], NULL, 10) };
		}
		else if (!strcmp(k, "symlink")) { NEED(2); ROOM(P.nsymlinks, MAX_ITEMS); P.symlinks[P.nsymlinks][0] = f[1]; P.symlinks[P.nsymlinks++][1] = f[2]; }
		else if (!strcmp(k, "console")) P.console = 1;
		else if (!strcmp(k, "mask")) { NEED(1); ROOM(P.nmasked, MAX_ITEMS); P.masked[P.nmasked++] = f[1]; }
		else if (!strcmp(k, "readonly_path")) { NEED(1); ROOM(P.nropaths, MAX_ITEMS); P.ropaths[P.nropaths++] = f[1]; }
		else if (!strcmp(k, "readonly_root")) P.readonly_root = 1;
		else if (!strcmp(k, "sysctl")) { NEED(2); ROOM(P.nsysctls, MAX_ITEMS); P.sysctls[P.nsysctls][0] = f[1]; P.sysctls[P.nsysctls++][1] = f[2]; }
		else if (!strcmp(k, "hostname")) { NEED(1); P.hostname = f[1]; }
		else if (!strcmp(k, "domainname")) { NEED(1); P.domainname = f[1]; }
		else if (!strcmp(k, "seccomp")) { NEED(2); parse_seccomp(f[1], f[2]); }
		else if (!strcmp(k, "rlimit")) {
			NEED(3); ROOM(P.nrlimits, 32);
			P.rlimits[P.nrlimits++] = (struct rlimit_op){ atoi(f[1]), strtoull(f[2], NULL, 10), strtoull(f[3], NULL, 10) };
		}
		else if (!strcmp(k, "oom_score_adj")) { NEED(1); P.has_oom = 1; P.oom_score_adj = atoi(f[1]); }
		else if (!strcmp(k, "user")) { NEED(2); P.uid = strtoul(f[1], NULL, 10); P.gid = strtoul(f[2], NULL, 10); }
		else if (!strcmp(k, "groups")) { for (int i = 1; i < nf && P.ngroups < MAX_ITEMS; i++) P.groups[P.ngroups++] = strtoul(f[i], NULL, 10); }
		else if (!strcmp(k, "umask")) { NEED(1); P.has_umask = 1; P.umask_value = strtoul(f[1], NULL, 8); }
		else if (!strcmp(k, "cwd")) { NEED(1); P.cwd = f[1]; }
		else if (!strcmp(k, "env")) { NEED(1); ROOM(P.nenv, MAX_ITEMS); P.env[P.nenv++] = f[1]; }
		else if (!strcmp(k, "arg")) { NEED(1); ROOM(P.nargs, MAX_ITEMS); P.args[P.nargs++] = f[1]; }
		else if (!strcmp(k, "terminal")) P.terminal = 1;
		else if (!strcmp(k, "winsize")) { NEED(2); P.ws_rows = atoi(f[1]); P.ws_cols = atoi(f[2]); }
		else if (!strcmp(k, "no_new_privs")) P.no_new_privs = 1;
		else if (!strcmp(k, "caps")) { NEED(5); P.has_caps = 1; for (int i = 0; i < 5; i++) P.caps[i] = strtoull(f[i + 1], NULL, 16); }
		else die_status("plan: unknown directive %s", k);
	}
	if (P.nargs == 0) die_status("plan: no arg lines");
	if (!P.exec_mode && !P.root) die_status("plan: create mode needs root");
}

/* ---------- reporting ---------- */

static void status_line(const char *fmt, ...)
{
	char line[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line - 1, fmt, ap);
	va_end(ap);
	if (n < 0) return;
	if (n > (int)sizeof line - 2) n = sizeof line - 2;
	line[n++] = '\n';
	(void)!write(STATUS_FD, line, n);
}

/* Parent-side failure: report and exit. */
static void die_status(const char *fmt, ...)
{
	char msg[3800];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	status_line("error %s", msg);
	_exit(1);
}

/* Child-side failure: send "E<message>" over the sync pipe to the parent. */
static int sync_fd = -1;
static void fail(const char *fmt, ...)
{
	char msg[3800];
	int saved = errno;
	va_list ap;
	msg[0] = 'E';
	va_start(ap, fmt);
	int n = vsnprintf(msg + 1, sizeof msg - 64, fmt, ap);
	va_end(ap);
	if (n < 0) n = 0;
	if (saved) snprintf(msg + 1 + n, 60, ": %s", strerror(saved));
	(void)!write(sync_fd, msg, strlen(msg));
	_exit(1);
}
#define FAIL_PLAIN(...) do { errno = 0; fail(__VA_ARGS__); } while (0)

/* ---------- child: filesystem helpers ---------- */

/* Opens `path` (relative to the rootfs fd) without letting symlinks escape the rootfs. */
static int open_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = { .flags = flags | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
	while (*path == '/') path++;
	if (!*path) path = ".";
	return syscall(SYS_openat2, rootfd, path, &how, sizeof how);
}

/* mkdir -p inside the rootfs; creates the last component as a file when is_file. */
static int mkpath_in_root(int rootfd, const char *path, int is_file)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != 0) continue;
		char saved = *p;
		*p = 0;
		int last = saved == 0 || p[1] == 0;
		int fd = open_in_root(rootfd, buf, O_PATH);
		if (fd >= 0) close(fd);
		else if (errno == ENOENT) {
			char *slash = strrchr(buf, '/');
			*slash = 0;
			int parent = open_in_root(rootfd, buf, O_PATH | O_DIRECTORY);
			*slash = '/';
			if (parent < 0) return -1;
			int rc;
			if (last && is_file) {
				rc = openat(parent, slash + 1, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
				if (rc >= 0) close(rc);
			} else rc = mkdirat(parent, slash + 1, 0755);
			close(parent);
			if (rc < 0 && errno != EEXIST) return -1;
		} else return -1;
		*p = saved;
		if (last) return 0;
	}
}

static void do_mount(int rootfd, struct mount_op *m)
{
	char proc_path[64];
	int create = strcmp(m->kind, "none") != 0;
	if (create && mkpath_in_root(rootfd, m->target, !strcmp(m->kind, "file")) < 0)
		fail("mount %s: create target", m->target);
	int fd = open_in_root(rootfd, m->target, O_PATH);
	if (fd < 0) fail("mount %s: open target", m->target);
	snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d", fd);
	if (mount(*m->source ? m->source : NULL, proc_path, *m->fstype ? m->fstype : NULL, m->flags,
		  *m->data ? m->data : NULL) < 0)
		fail("mount %s on %s (type %s, flags %#lx)", m->source, m->target, m->fstype, m->flags);
	close(fd);
}

/* mknod a device node (or FIFO) in the rootfs, replacing whatever non-directory is there. */
static void make_device(int rootfd, struct device_op *d)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", d->path);
	char *slash = strrchr(buf, '/');
	if (!slash || !slash[1]) FAIL_PLAIN("device %s: bad path", d->path);
	*slash = 0;
	if (*buf && mkpath_in_root(rootfd, buf, 0) < 0) fail("device %s: create parent", d->path);
	int dir = open_in_root(rootfd, *buf ? buf : "/", O_PATH | O_DIRECTORY);
	if (dir < 0) fail("device %s: open parent", d->path);
	const char *name = slash + 1;
	mode_t type = d->type == 'c' ? S_IFCHR : d->type == 'b' ? S_IFBLK : S_IFIFO;
	if (unlinkat(dir, name, 0) < 0 && errno != ENOENT) fail("device %s: remove existing", d->path);
	if (mknodat(dir, name, type | (d->mode & 07777), makedev(d->major, d->minor)) < 0) fail("mknod %s", d->path);
	if (fchownat(dir, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0) fail("chown %s", d->path);
	/* mknod applies the umask: set the mode exactly */
	if (fchmodat(dir, name, d->mode & 07777, 0) < 0) fail("chmod %s", d->path);
	close(dir);
}

/* The flags a bind remount must keep: the mount's locked ones (nosuid, nodev, noexec, atime). */
static unsigned long mount_flags_of(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;
	if (statvfs(path, &sv) < 0) return 0;
	if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
	return f;
}

/* HOME, when the plan's environment has none: the user's home from the
 * container's /etc/passwd, else "/" (what runc does). */
static void default_home(void)
{
	for (int i = 0; i < P.nenv; i++)
		if (!strncmp(P.env[i], "HOME=", 5)) return;
	static char home[4200];
	snprintf(home, sizeof home, "HOME=/");
	FILE *f = fopen("/etc/passwd", "re");
	if (f) {
		char line[4096];
		while (fgets(line, sizeof line, f)) {
			char *fld[7] = {0};
			int n = 0;
			for (char *p = line; n < 7; ) {
				fld[n++] = p;
				p = strchr(p, ':');
				if (!p) break;
				*p++ = 0;
			}
			if (n < 6 || !*fld[2]) continue;
			char *end;
			unsigned long uid = strtoul(fld[2], &end, 10);
			if (*end || uid != P.uid) continue;
			fld[5][strcspn(fld[5], "\n")] = 0;
			if (*fld[5]) snprintf(home, sizeof home, "HOME=%s", fld[5]);
			break;
		}
		fclose(f);
	}
	if (P.nenv < MAX_ITEMS) P.env[P.nenv++] = home;
}

static void load_seccomp(void)
{
	struct sock_fprog prog = { .len = P.seccomp_len, .filter = P.seccomp };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, P.seccomp_flags, &prog) < 0) fail("load seccomp filter");
}

static void write_file(const char *path, const char *value, const char *step)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, value, strlen(value)) < 0) fail("%s: write %s", step, path);
	close(fd);
}

/* Makes the rootfs the process root: pivot_root, or MS_MOVE + chroot when the
 * current root is the initramfs (pivot_root refuses it with EINVAL). */
static void enter_root(void)
{
	if (chdir(P.root) < 0) fail("chdir to rootfs %s", P.root);
	if (syscall(SYS_pivot_root, ".", ".") == 0) {
		/* the old root is now stacked under "."; detach it */
		if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0) fail("make old root rslave");
		if (umount2(".", MNT_DETACH) < 0) fail("detach old root");
	} else if (errno == EINVAL) {
		if (mount(P.root, "/", NULL, MS_MOVE, NULL) < 0) fail("move rootfs onto /");
		if (chroot(".") < 0) fail("chroot into rootfs");
	} else fail("pivot_root into %s", P.root);
	if (chdir("/") < 0) fail("chdir /");
}

static void mkdir_p(const char *path)
{
	char buf[4096];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1; *p; p++)
		if (*p == '/') { *p = 0; mkdir(buf, 0755); *p = '/'; }
	mkdir(buf, 0755);
}

/* ---------- child: PATH lookup (same messages as runc) ---------- */

static const char *lookup_path(char *out, size_t len)
{
	const char *name = P.args[0];
	struct stat st;
	if (strchr(name, '/')) {
		if (stat(name, &st) < 0) fail("exec: \"%s\": stat %s", name, name);
		if (!S_ISREG(st.st_mode) || access(name, X_OK) < 0) { errno = EACCES; fail("exec: \"%s\"", name); }
		return name;
	}
	const char *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (int i = 0; i < P.nenv; i++)
		if (!strncmp(P.env[i], "PATH=", 5)) path = P.env[i] + 5;
	for (const char *p = path; ; ) {
		const char *end = strchrnul(p, ':');
		int dirlen = end - p;
		snprintf(out, len, "%.*s/%s", dirlen ? dirlen : 1, dirlen ? p : ".", name);
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0) return out;
		if (!*end) break;
		p = end + 1;
	}
	FAIL_PLAIN("exec: \"%s\": executable file not found in $PATH", name);
	return NULL;
}

/* ---------- child: credentials and capabilities ---------- */

static void set_credentials(void)
{
	if (P.has_caps) {
		for (int c = 0; c < 64; c++)
			if (!(P.caps[0] & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
				fail("drop capability %d from bounding set", c);
		if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) fail("keep capabilities");
	}
	/* the user must be able to reopen its terminal (runc chowns stdio the same way) */
	if (P.terminal && fchown(0, P.uid, -1) < 0) fail("chown the terminal to uid %u", P.uid);
	if (setgroups(P.ngroups, P.groups) < 0) fail("setgroups");
	if (setresgid(P.gid, P.gid, P.gid) < 0) fail("setgid %u", P.gid);
	if (setresuid(P.uid, P.uid, P.uid) < 0) fail("setuid %u", P.uid);
	if (P.has_caps) {
		struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
		struct __user_cap_data_struct data[2];
		for (int i = 0; i < 2; i++) {
			data[i].effective = P.caps[1] >> (32 * i);
			data[i].permitted = P.caps[2] >> (32 * i);
			data[i].inheritable = P.caps[3] >> (32 * i);
		}
		if (syscall(SYS_capset, &hdr, data) < 0) fail("capset");
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		for (int c = 0; c < 64; c++)
			if ((P.caps[4] & (1ULL << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
				fail("raise ambient capability %d", c);
	}
}

/* ---------- child: the terminal ---------- */

/* Terminal mode, once inside the container's root: allocate the pty from the
 * container's own devpts (so ttyname says /dev/pts/N, as under runc), hand the
 * master to the parent over tty_sock (SCM_RIGHTS), bind the slave onto
 * /dev/console (create mode) and make it the controlling terminal and stdio. */
static void setup_terminal(int tty_sock)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (master < 0) fail("open /dev/ptmx in the container (a terminal needs /dev/pts mounted)");
	char name[128];
	if (unlockpt(master) < 0 || ptsname_r(master, name, sizeof name) != 0) fail("unlock the container's pty");
	int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (slave < 0) fail("open pty slave %s", name);
	char byte = 'M';
	struct iovec iov = { &byte, 1 };
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
	memset(&u, 0, sizeof u);
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &master, sizeof(int));
	if (sendmsg(tty_sock, &msg, 0) != 1) fail("pass the pty master to the launcher");
	close(master);
	close(tty_sock);
	if (P.console && !P.exec_mode) {
		int fd = open("/dev/console", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) close(fd);
		if (mount(name, "/dev/console", NULL, MS_BIND, NULL) < 0) fail("bind %s onto /dev/console", name);
	}
	if (ioctl(slave, TIOCSCTTY, 0) < 0) fail("make the pty the controlling terminal");
	for (int i = 0; i < 3; i++) if (dup2(slave, i) < 0) fail("dup2 pty");
	if (slave > 2) close(slave);
}

/* ---------- child ---------- */

static void child(int tty_sock, int start_fd, int root_fd)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	if (setsid() < 0) fail("setsid");
	/* namespaces: join those given by path (the pid one was joined by the parent), then unshare */
	for (int i = 0; i < P.njoins; i++)
		if (strcmp(P.joins[i].type, "pid") && setns(P.joins[i].fd, ns_flag(P.joins[i].type)) < 0)
			fail("setns %s %s", P.joins[i].type, P.joins[i].path);
	if (P.unshare_flags & ~CLONE_NEWPID && unshare(P.unshare_flags & ~CLONE_NEWPID) < 0)
		fail("unshare namespaces %#x", P.unshare_flags);

	if (P.has_oom) {
		char v[32];
		snprintf(v, sizeof v, "%d", P.oom_score_adj);
		write_file("/proc/self/oom_score_adj", v, "oom_score_adj");
	}
	for (int i = 0; i < P.nsysctls; i++) {
		char path[4200];
		snprintf(path, sizeof path, "/proc/sys/%s", P.sysctls[i][0]);
		write_file(path, P.sysctls[i][1], "sysctl");
	}

	if (P.exec_mode) {
		/* exec: enter the container's root (the mount namespace was joined above) */
		if (root_fd >= 0 && (fchdir(root_fd) < 0 || chroot(".") < 0)) fail("chroot into %s", P.exec_root);
		if (chdir("/") < 0) fail("chdir /");
		if (P.terminal) setup_terminal(tty_sock);
	} else {
		unsigned long propagation = P.propagation ? P.propagation : (MS_SLAVE | MS_REC);
		if (mount(NULL, "/", NULL, propagation, NULL) < 0) fail("set root propagation");
		/* A mount whose parent is shared cannot be moved or pivoted (EINVAL), and
		 * with an rshared root propagation the rootfs's own mount, the parent of
		 * the bind below, is. As runc does, it goes private first (EINVAL: the
		 * rootfs is no mount point, so nothing is shared under it), and the
		 * propagation asked for is applied again once the new root is "/". */
		if ((propagation & MS_SHARED) && mount(NULL, P.root, NULL, MS_PRIVATE, NULL) < 0 && errno != EINVAL)
			fail("make rootfs %s private", P.root);
		if (mount(P.root, P.root, NULL, MS_BIND | MS_REC, NULL) < 0) fail("bind rootfs %s onto itself", P.root);
		int rootfd = open(P.root, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (rootfd < 0) fail("open rootfs %s", P.root);
		for (int i = 0; i < P.nmounts; i++) do_mount(rootfd, &P.mounts[i]);
		mode_t old_umask = umask(0);
		for (int i = 0; i < P.ndevices; i++) make_device(rootfd, &P.devices[i]);
		umask(old_umask);
		for (int i = 0; i < P.nsymlinks; i++) {
			char *link = P.symlinks[i][1], *slash = strrchr(link, '/');
			*slash = 0;
			int dir = open_in_root(rootfd, *link ? link : "/", O_PATH | O_DIRECTORY);
			*slash = '/';
			if (dir < 0 || (symlinkat(P.symlinks[i][0], dir, slash + 1) < 0 && errno != EEXIST))
				fail("symlink %s -> %s", link, P.symlinks[i][0]);
			close(dir);
		}
		close(rootfd);
		enter_root();
		if ((propagation & MS_SHARED) && mount(NULL, "/", NULL, propagation, NULL) < 0) fail("set root propagation on the new root");
		/* runc's order: the console after the pivot, before masks and the read-only root */
		if (P.terminal) setup_terminal(tty_sock);
		for (int i = 0; i < P.nmasked; i++) {
			struct stat st;
			if (stat(P.masked[i], &st) < 0) continue;
			int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", P.masked[i], "tmpfs", MS_RDONLY, NULL)
						     : mount("/dev/null", P.masked[i], NULL, MS_BIND, NULL);
			if (rc < 0) fail("mask %s", P.masked[i]);
		}
		for (int i = 0; i < P.nropaths; i++) {
			if (access(P.ropaths[i], F_OK) < 0) continue;
			if (mount(P.ropaths[i], P.ropaths[i], NULL, MS_BIND | MS_REC, NULL) < 0 ||
			    mount(NULL, P.ropaths[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | mount_flags_of(P.ropaths[i]), NULL) < 0)
				fail("make %s read-only", P.ropaths[i]);
		}
		if (P.readonly_root && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | mount_flags_of("/"), NULL) < 0)
			fail("remount root read-only");
		if (P.hostname && sethostname(P.hostname, strlen(P.hostname)) < 0) fail("sethostname %s", P.hostname);
		if (P.domainname && setdomainname(P.domainname, strlen(P.domainname)) < 0) fail("setdomainname %s", P.domainname);
		mkdir_p(P.cwd);
	}

	for (int i = 0; i < P.nrlimits; i++) {
		struct rlimit r = { P.rlimits[i].soft, P.rlimits[i].hard };
		if (setrlimit(P.rlimits[i].resource, &r) < 0) fail("setrlimit %d", P.rlimits[i].resource);
	}
	default_home();
	/* without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while
	 * the capabilities are still held (runc's order); else right before exec */
	if (P.seccomp && !P.no_new_privs) load_seccomp();
	set_credentials();
	if (P.has_umask) umask(P.umask_value);
	if (chdir(P.cwd) < 0) fail("chdir to cwd %s", P.cwd);
	char resolved[4096];
	const char *file = lookup_path(resolved, sizeof resolved);
	if (P.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) fail("set no_new_privs");

	/* ready: wait for the start byte (EOF means the parent is gone: give up) */
	if (write(sync_fd, "R", 1) != 1) _exit(1);
	char c;
	if (read(start_fd, &c, 1) != 1) _exit(1);
	syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
	if (P.seccomp && P.no_new_privs) load_seccomp();
	P.env[P.nenv] = NULL;
	P.args[P.nargs] = NULL;
	execve(file, P.args, P.env);
	int saved = errno;
	char msg[512];
	snprintf(msg, sizeof msg, "Eexec: \"%s\": %s", P.args[0], strerror(saved));
	(void)!write(sync_fd, msg, strlen(msg));
	_exit(127);
}

/* ---------- parent: byte relays (pty and stdio pipes) ---------- */

/* One direction of copying. is_input: toward the child (ignored once it exited).
 * eof_char >= 0: at input EOF write this byte instead (EOF for a canonical pty). */
struct relay { int in, out, eof, closed, close_out, is_input, eof_char; size_t len, off; char buf[16384]; };

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void relay_init(struct relay *r, int in, int out, int close_out, int is_input)
{
	memset(r, 0, sizeof *r);
	r->in = in; r->out = out; r->close_out = close_out; r->is_input = is_input; r->eof_char = -1;
	set_nonblock(in); set_nonblock(out);
}

/* Moves bytes in -> out without ever blocking; returns 1 when something happened. */
static int relay_step(struct relay *r)
{
	int moved = 0;
	if (r->closed) return 0;
	if (r->len == 0 && !r->eof) {
		ssize_t n = read(r->in, r->buf, sizeof r->buf);
		if (n > 0) { r->len = n; r->off = 0; moved = 1; }
		else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			r->eof = 1; moved = 1;
			/* stdin EOF into a canonical-mode pty: send the EOF character instead */
			if (r->eof_char >= 0) { r->buf[0] = r->eof_char; r->len = 1; r->off = 0; }
		}
	}
	while (r->len > 0) {
		ssize_t n = write(r->out, r->buf + r->off, r->len);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR) break;
			r->len = 0; r->eof = 1; /* reader gone: drop */
			break;
		}
		r->off += n; r->len -= n; moved = 1;
	}
	if (r->eof && r->len == 0) {
		r->closed = 1;
		if (r->close_out) close(r->out);
	}
	return moved;
}

static void relay_poll(struct relay *r, struct pollfd *in, struct pollfd *out)
{
	in->fd = out->fd = -1;
	in->events = POLLIN; out->events = POLLOUT;
	if (r->closed) return;
	if (r->len == 0 && !r->eof) in->fd = r->in;
	else if (r->len > 0) out->fd = r->out;
}

/* ---------- parent ---------- */

/* One fd sent with SCM_RIGHTS (the child's pty master); -1 with errno set if none came. */
static int receive_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
	ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	struct cmsghdr *c = n == 1 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) {
		if (n >= 0) errno = EPROTO;
		return -1;
	}
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

int main(int argc, char **argv)
{
	if (argc != 2) { fprintf(stderr, "usage: tern-launch <plan-file>\n"); return 2; }
	signal(SIGPIPE, SIG_IGN);
	parse_plan(argv[1]);

	/* open everything that names the existing container before moving anywhere */
	for (int i = 0; i < P.njoins; i++)
		if ((P.joins[i].fd = open(P.joins[i].path, O_RDONLY | O_CLOEXEC)) < 0)
			die_status("open namespace %s: %s", P.joins[i].path, strerror(errno));
	int root_fd = -1;
	if (P.exec_root && (root_fd = open(P.exec_root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		die_status("open %s: %s", P.exec_root, strerror(errno));

	/* pty: the child opens it inside the container and sends the master back here */
	int master = -1, tty_sock[2] = { -1, -1 };
	if (P.terminal && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, tty_sock) < 0)
		die_status("socketpair: %s", strerror(errno));

	/* stdio that is a socket (Node's "pipe") is replaced by a real pipe and relayed, so
	 * /dev/stdout works inside the container; anything else is passed through */
	struct relay io[3];
	int nio = 0, child_std[3] = { 0, 1, 2 };
	if (!P.terminal) {
		for (int fd = 0; fd < 3; fd++) {
			struct stat st;
			int p[2];
			if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) continue;
			if (pipe2(p, O_CLOEXEC) < 0) die_status("pipe: %s", strerror(errno));
			if (fd == 0) { relay_init(&io[nio++], 0, p[1], 1, 1); child_std[0] = p[0]; }
			else { relay_init(&io[nio++], p[0], fd, 1, 0); child_std[fd] = p[1]; }
		}
	}

	/* signals are taken through a signalfd; the child unblocks them again */
	sigset_t sigs;
	sigemptyset(&sigs);
	int fwd[] = { SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGCHLD };
	for (unsigned i = 0; i < sizeof fwd / sizeof fwd[0]; i++) sigaddset(&sigs, fwd[i]);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	int sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) die_status("signalfd: %s", strerror(errno));

	if (P.cgroup && *P.cgroup) {
		char path[4200];
		snprintf(path, sizeof path, "%s/cgroup.procs", P.cgroup);
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, "0", 1) != 1) die_status("join cgroup %s: %s", P.cgroup, strerror(errno));
		close(fd);
	}
	/* a pid namespace applies to children: join or create it before forking */
	for (int i = 0; i < P.njoins; i++)
		if (!strcmp(P.joins[i].type, "pid") && setns(P.joins[i].fd, CLONE_NEWPID) < 0)
			die_status("setns pid %s: %s", P.joins[i].path, strerror(errno));
	if ((P.unshare_flags & CLONE_NEWPID) && unshare(CLONE_NEWPID) < 0)
		die_status("unshare pid namespace: %s", strerror(errno));

	int sync_pipe[2], start_pipe[2];
	if (pipe2(sync_pipe, O_CLOEXEC) < 0 || pipe2(start_pipe, O_CLOEXEC) < 0)
		die_status("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) die_status("fork: %s", strerror(errno));
	if (pid == 0) {
		close(sync_pipe[0]); close(start_pipe[1]);
		sync_fd = sync_pipe[1];
		if (tty_sock[0] >= 0) close(tty_sock[0]);
		for (int fd = 0; fd < 3; fd++)
			if (child_std[fd] != fd && dup2(child_std[fd], fd) < 0) fail("dup2 stdio");
		child(tty_sock[1], start_pipe[0], root_fd);
	}
	close(sync_pipe[1]); close(start_pipe[0]);
	if (tty_sock[1] >= 0) close(tty_sock[1]);
	for (int fd = 0; fd < 3; fd++)
		if (child_std[fd] != fd) close(child_std[fd]);
	if (root_fd >= 0) close(root_fd);

	/* leave the container's cgroup again so the launcher is not counted in it */
	if (P.cgroup_return && *P.cgroup_return) {
		char path[4200];
		snprintf(path, sizeof path, "%s/cgroup.procs", P.cgroup_return);
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0) { (void)!write(fd, "0", 1); close(fd); }
	}

	/* wait for the child to be ready (or to report why not) */
	char msg[4096];
	ssize_t n = read(sync_pipe[0], msg, sizeof msg - 1);
	if (n != 1 || msg[0] != 'R') {
		int st = 0;
		waitpid(pid, &st, 0);
		if (n > 1 && msg[0] == 'E') { msg[n] = 0; die_status("%s", msg + 1); }
		die_status("container init exited before it was ready (wait status %#x)", st);
	}
	if (P.terminal) {
		master = receive_fd(tty_sock[0]);
		close(tty_sock[0]);
		if (master < 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			die_status("receive the container's pty master: %s", strerror(errno));
		}
		if (P.ws_rows) {
			struct winsize ws = { .ws_row = P.ws_rows, .ws_col = P.ws_cols };
			ioctl(master, TIOCSWINSZ, &ws);
		}
	}
	status_line("pid %d", pid);

	struct relay tin, tout;
	if (P.terminal) {
		struct termios t;
		int eofc = (tcgetattr(master, &t) == 0 && (t.c_lflag & ICANON)) ? t.c_cc[VEOF] : -1;
		struct stat st;
		relay_init(&tout, master, 1, 1, 0);
		if (fstat(0, &st) == 0 && S_ISSOCK(st.st_mode)) {
			relay_init(&tin, 0, master, 0, 1);
			tin.eof_char = eofc;
		} else { /* no stdin wanted (fd 0 is /dev/null): never send EOF into the pty */
			memset(&tin, 0, sizeof tin);
			tin.closed = tin.is_input = 1;
		}
	}

	/* main loop: control commands, signals, exec result, stdio relays */
	int started = 0, control_open = 1, exited = 0, exit_status = 0;
	char ctl[512]; size_t ctl_len = 0;
	for (;;) {
		struct pollfd pfd[4 + 2 * 4];
		int np = 0;
		pfd[np++] = (struct pollfd){ .fd = control_open ? CONTROL_FD : -1, .events = POLLIN };
		pfd[np++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		pfd[np++] = (struct pollfd){ .fd = started ? sync_pipe[0] : -1, .events = POLLIN };
		struct relay *rel[5]; int nrel = 0;
		for (int i = 0; i < nio; i++) rel[nrel++] = &io[i];
		if (P.terminal) { rel[nrel++] = &tin; rel[nrel++] = &tout; }
		for (int i = 0; i < nrel; i++) {
			relay_poll(rel[i], &pfd[np], &pfd[np + 1]);
			if (exited && rel[i]->is_input) pfd[np].fd = pfd[np + 1].fd = -1; /* stdin is moot after exit */
			np += 2;
		}
		int rc = poll(pfd, np, exited ? 100 : -1);
		if (rc < 0 && errno != EINTR) die_status("poll: %s", strerror(errno));
		if (exited) {
			/* after the exit: drain output until it ends or stays quiet */
			int open_out = 0, buffered = 0;
			for (int i = 0; i < nrel; i++)
				if (!rel[i]->is_input && !rel[i]->closed) { open_out = 1; buffered |= rel[i]->len > 0; }
			if (!open_out || (rc == 0 && !buffered)) break;
		}
		if (pfd[0].revents) {
			ssize_t m = read(CONTROL_FD, ctl + ctl_len, sizeof ctl - 1 - ctl_len);
			if (m <= 0) {
				control_open = 0;
				if (!started) {
					kill(pid, SIGKILL);
					waitpid(pid, NULL, 0);
					die_status("aborted: control channel closed before start");
				}
			} else ctl_len += m;
			char *nl;
			while ((nl = memchr(ctl, '\n', ctl_len))) {
				*nl = 0;
				int a, b;
				if (!strcmp(ctl, "start") && !started) {
					started = 1;
					if (write(start_pipe[1], "S", 1) != 1) status_line("error start: %s", strerror(errno));
					close(start_pipe[1]);
				} else if (sscanf(ctl, "resize %d %d", &a, &b) == 2 && master >= 0) {
					struct winsize ws = { .ws_row = a, .ws_col = b };
					ioctl(master, TIOCSWINSZ, &ws);
				} else if (sscanf(ctl, "signal %d", &a) == 1) {
					kill(pid, a);
				}
				size_t used = nl + 1 - ctl;
				memmove(ctl, nl + 1, ctl_len - used);
				ctl_len -= used;
			}
			if (ctl_len == sizeof ctl - 1) ctl_len = 0; /* garbage: drop */
		}
		/* the exec result before any exit, so "started" always precedes "exit" */
		if (pfd[2].revents) {
			ssize_t m = read(sync_pipe[0], msg, sizeof msg - 1);
			if (m > 1 && msg[0] == 'E') { msg[m] = 0; status_line("error %s", msg + 1); }
			else status_line("started");
			close(sync_pipe[0]);
			sync_pipe[0] = -1;
		}
		if (pfd[1].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) == sizeof si) {
				if (si.ssi_signo != SIGCHLD) { kill(pid, si.ssi_signo); continue; }
				int st;
				if (!exited && waitpid(pid, &st, WNOHANG) == pid) {
					exited = 1;
					exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
					/* report the exit now; output may still be draining */
					status_line("exit %d", exit_status);
				}
			}
		}
		for (int i = 0; i < nrel; i++)
			if (!(exited && rel[i]->is_input)) relay_step(rel[i]);
	}
	return exit_status;
}
