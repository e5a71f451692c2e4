/*
 * containerd-shim-tern-v2: the binary containerd runs. The shim itself is the
 * Node bundle shim.js beside this file's real path; every action but `start`
 * execs it in place (no extra process).
 *
 * `start` must leave a shim serving the pod and print its address. One shim
 * process serves every pod started with the same arguments (but the
 * container's id and bundle), the same environment and the same shim bundle
 * (shim-main.js beside shim.js: its inode, time and size) (src/shim/shim-daemon.ts):
 * under a lock on the socket directory, this asks the running one on its
 * control socket (SOCKET_ROOT/tern-<hash of all that>): it sends its working
 * directory and arguments, NUL-terminated, and prints the address it answers
 * ("ok <address>"), or its message on stderr with exit 1 ("err <message>").
 * When none answers (none runs, or it is exiting) this forks a new one (shim.js
 * action `launch`, in a session of its own, stdio on /dev/null, fd 3 a pipe
 * back to us, the control socket named in TERN_SHIM_CONTROL_SOCKET), waits for
 * its word on that pipe the same way, and lets the lock go. A shim that says
 * nothing within READY_TIMEOUT_MS is killed if it is the one we forked; a
 * running one is left (it tears the pod down when it finds nobody listening).
 * Without the lock (the directory cannot be made or opened) the pod gets a
 * shim process of its own.
 *
 * `delete`: containerd 1.6 runs it after every shim disconnect, a clean exit
 * too, and waits for it. A shim that tore its sandbox down completely leaves
 * the answer (an encoded DeleteResponse) in the bundle as DELETE_ANSWER; then
 * this prints it and removes it, with nothing to clean and no Node to start.
 * Without it (a dead shim), Node's `delete` cleans up from disk as ever.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef READY_TIMEOUT_MS
#define READY_TIMEOUT_MS 20000
#endif
#ifndef SOCKET_ROOT
#define SOCKET_ROOT "/run/containerd/s" /* src/shim/paths.ts SOCKET_ROOT */
#endif
#define NAME "containerd-shim-tern-v2"
#define CONTROL_ENV "TERN_SHIM_CONTROL_SOCKET" /* src/shim/shim-daemon.ts CONTROL_SOCKET_ENV */

extern char **environ;
#define DELETE_ANSWER "tern-delete-answer" /* src/shim/delete.ts DELETE_ANSWER_FILE */

static int fail(const char *fmt, const char *arg) {
	fprintf(stderr, NAME ": ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 1;
}

static long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* FNV-1a over a string and its terminator. */
static uint64_t fnv(uint64_t h, const char *s) {
	do {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	} while (*s++);
	return h;
}

/*
 * Which shim process a `start` may join: this launcher, the shim's bundle as
 * it is now (a tern installed over a running one starts new pods in a new
 * process; the old one serves its own pods to their end), the arguments but
 * the container's id and bundle, the environment.
 */
static uint64_t shim_key(const char *self, const char *bundle, int argc, char **argv) {
	uint64_t h = fnv(0xcbf29ce484222325ULL, self);
	struct stat st;
	if (stat(bundle, &st) == 0) {
		char id[96];
		snprintf(id, sizeof id, "%llu:%llu:%lld.%09ld:%lld", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, (long long)st.st_mtim.tv_sec,
		         st.st_mtim.tv_nsec, (long long)st.st_size);
		h = fnv(h, id);
	}
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "-id") == 0 || strcmp(argv[i], "-bundle") == 0) && i + 1 < argc) {
			i++;
			continue;
		}
		h = fnv(h, argv[i]);
	}
	for (char **e = environ; *e; e++) h = fnv(h, *e);
	return h;
}

/* The socket directory (made as the shim makes it, 0700), locked; -1 when it cannot be. */
static int lock_socket_dir(void) {
	char parent[PATH_MAX];
	snprintf(parent, sizeof parent, "%s", SOCKET_ROOT);
	if (mkdir(dirname(parent), 0700) < 0 && errno != EEXIST) return -1;
	if (mkdir(SOCKET_ROOT, 0700) == 0) chmod(SOCKET_ROOT, 0700);
	else if (errno != EEXIST) return -1;
	int fd = open(SOCKET_ROOT, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) return -1;
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

/* Reads fd to end-of-file into word (trailing blanks cut) until deadline; its length, or -1 past the deadline. */
static long read_word(int fd, char *word, size_t cap, long long deadline) {
	size_t len = 0;
	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) return -1;
		ssize_t got = read(fd, word + len, cap - 1 - len);
		if (got < 0 && errno == EINTR) continue;
		if (got <= 0 || (len += (size_t)got) == cap - 1) break;
	}
	word[len] = '\0';
	while (len > 0 && (word[len - 1] == '\n' || word[len - 1] == ' ')) word[--len] = '\0';
	return (long)len;
}

static int send_all(int fd, const char *buf, size_t n) {
	while (n > 0) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) return 0;
		buf += w;
		n -= (size_t)w;
	}
	return 1;
}

/*
 * Asks the shim on the control socket to serve this `start`: 1 when it
 * answered (word), 0 when none took it (no socket, nobody behind it: removed,
 * or one exiting), -1 when it did not answer by the deadline.
 */
static int ask_shim(const char *control, int argc, char **argv, char *word, size_t cap) {
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(control) >= sizeof addr.sun_path) return 0;
	strcpy(addr.sun_path, control);
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0) return 0;
	if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
		/* A dead shim's socket: nobody else binds it while we hold the lock. */
		if (errno == ECONNREFUSED) unlink(control);
		close(s);
		return 0;
	}
	char cwd[PATH_MAX];
	int sent = getcwd(cwd, sizeof cwd) != NULL && send_all(s, cwd, strlen(cwd) + 1);
	for (int i = 1; sent && i < argc; i++) sent = send_all(s, argv[i], strlen(argv[i]) + 1);
	if (!sent || shutdown(s, SHUT_WR) < 0) {
		close(s);
		return 0;
	}
	long len = read_word(s, word, cap, now_ms() + READY_TIMEOUT_MS);
	close(s);
	return len < 0 ? -1 : len > 0;
}

/* Prints the address of an "ok" word; otherwise the cause, exit 1. */
static int report(const char *word) {
	if (strncmp(word, "ok ", 3) == 0) {
		fputs(word + 3, stdout);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (strncmp(word, "err ", 4) == 0) return fail("%s", word + 4);
	return fail("shim daemon failed to start: %s", *word ? word : "exited without a word");
}

/* argv for node: NAME (what ps shows), shim.js, then our arguments, `start` made `launch`. */
static char **node_argv(const char *script, int argc, char **argv, int launch) {
	char **out = calloc((size_t)argc + 2, sizeof(char *));
	if (!out) return NULL;
	out[0] = NAME;
	out[1] = (char *)script;
	for (int i = 1; i < argc; i++) out[i + 1] = argv[i];
	if (launch) out[argc] = "launch";
	return out;
}

/* The answer a clean exit left in the bundle, printed and removed; 0 when done, -1 to run Node's delete. */
static int answer_left(int argc, char **argv) {
	const char *bundle = ".";
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], "-bundle") == 0) bundle = argv[i + 1];
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s/" DELETE_ANSWER, bundle) >= (int)sizeof path) return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -1;
	char buf[256];
	ssize_t len = read(fd, buf, sizeof buf);
	close(fd);
	if (len <= 0 || len == (ssize_t)sizeof buf) return -1;
	if (write(1, buf, (size_t)len) != len) return -1;
	unlink(path);
	return 0;
}

int main(int argc, char **argv) {
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n < 0) return fail("cannot read /proc/self/exe: %s", strerror(errno));
	self[n] = '\0';
	char script[PATH_MAX];
	if (snprintf(script, sizeof script, "%s/shim.js", dirname(self)) >= (int)sizeof script) return fail("path too long: %s", self);

	/* containerd gives the action last: `... -id ID start`. */
	if (argc > 1 && strcmp(argv[argc - 1], "delete") == 0 && answer_left(argc, argv) == 0) return 0;
	int start = argc > 1 && strcmp(argv[argc - 1], "start") == 0;
	char **args = node_argv(script, argc, argv, start);
	if (!args) return fail("%s", strerror(ENOMEM));
	if (!start) {
		execvp("node", args);
		return fail("cannot run node: %s", strerror(errno));
	}

	/* Under the lock: the running shim process for these arguments, else a new one. */
	char word[4096];
	char control[PATH_MAX];
	int lock = lock_socket_dir();
	if (lock >= 0) {
		char dir[PATH_MAX], bundle[PATH_MAX];
		snprintf(dir, sizeof dir, "%s", script);
		snprintf(bundle, sizeof bundle, "%s/shim-main.js", dirname(dir));
		snprintf(control, sizeof control, "%s/tern-%016llx", SOCKET_ROOT, (unsigned long long)shim_key(self, bundle, argc, argv));
		int asked = ask_shim(control, argc, argv, word, sizeof word);
		if (asked < 0) return fail("the running shim (control socket %s) did not answer in time", control);
		if (asked > 0) return report(word);
		setenv(CONTROL_ENV, control, 1);
	}

	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) return fail("pipe: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0) return fail("fork: %s", strerror(errno));
	if (child == 0) {
		setsid();
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || dup2(pipefd[1], 3) < 0) _exit(127);
		execvp("node", args);
		dprintf(3, "err cannot run node: %s\n", strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);

	/* The daemon's word: read to end-of-file (it closes fd 3 once it has spoken). */
	if (read_word(pipefd[0], word, sizeof word, now_ms() + READY_TIMEOUT_MS) < 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		char pid[32];
		snprintf(pid, sizeof pid, "%d", (int)child);
		fprintf(stderr, NAME ": shim daemon (pid %s) did not become ready within %d ms; killed\n", pid, READY_TIMEOUT_MS);
		return 1;
	}
	if (strncmp(word, "ok ", 3) == 0) {
		/* A daemon that joined an existing shim has exited by now: reap it, never the running one. */
		waitpid(child, NULL, WNOHANG);
		return report(word);
	}
	int status;
	if (waitpid(child, &status, WNOHANG) == 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	return report(word);
}
