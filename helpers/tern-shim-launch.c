/*
 * containerd-shim-tern-v2: the binary containerd runs. The shim itself is the
 * Node bundle shim.js beside this file's real path; every action but `start`
 * execs it in place (no extra process). `start` must leave a daemon running
 * and print its address: instead of a Node process that launches another
 * Node process, this forks the daemon itself (shim.js action `launch`, in a
 * session of its own, stdio on /dev/null, fd 3 a pipe back to us), waits for
 * its word on that pipe ("ok <address>" or "err <message>") and prints the
 * address, or the message on stderr with exit 1. A daemon that says nothing
 * within READY_TIMEOUT_MS is killed. One Node start per pod instead of two.
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
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef READY_TIMEOUT_MS
#define READY_TIMEOUT_MS 20000
#endif
#define NAME "containerd-shim-tern-v2"
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
	char word[4096];
	size_t len = 0;
	long long deadline = now_ms() + READY_TIMEOUT_MS;
	for (;;) {
		long long left = deadline - now_ms();
		struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
		int r = left > 0 ? poll(&p, 1, (int)left) : 0;
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			char pid[32];
			snprintf(pid, sizeof pid, "%d", (int)child);
			fprintf(stderr, NAME ": shim daemon (pid %s) did not become ready within %d ms; killed\n", pid, READY_TIMEOUT_MS);
			return 1;
		}
		ssize_t got = read(pipefd[0], word + len, sizeof word - 1 - len);
		if (got < 0 && errno == EINTR) continue;
		if (got <= 0 || (len += (size_t)got) == sizeof word - 1) break;
	}
	word[len] = '\0';
	while (len > 0 && (word[len - 1] == '\n' || word[len - 1] == ' ')) word[--len] = '\0';

	if (strncmp(word, "ok ", 3) == 0) {
		/* A daemon that joined an existing shim has exited by now: reap it, never the running one. */
		waitpid(child, NULL, WNOHANG);
		fputs(word + 3, stdout);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	int status;
	if (waitpid(child, &status, WNOHANG) == 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
	}
	if (strncmp(word, "err ", 4) == 0) return fail("%s", word + 4);
	return fail("shim daemon failed to start: %s", len ? word : "exited without a word");
}
