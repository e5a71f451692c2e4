/*
 * tern-init: PID 1 of the tern guest.
 *
 * Usage: tern-init PROGRAM [ARGS...]
 *
 * Starts PROGRAM (the tern agent) as a child with a fixed environment, reaps
 * every process that ends up parented to PID 1, and ignores SIGTERM, SIGINT and
 * SIGHUP for itself. When the agent exits, for any reason, it logs the status
 * to the console, syncs and powers the machine off, so that both an orderly
 * DestroySandbox and an agent crash end the VM (QEMU then exits).
 *
 * When not running as PID 1 (a test on a host) it never powers off: it becomes
 * a child subreaper, logs to stderr and exits with the agent's status instead
 * (128+signal for a signal death).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

#define AGENT_PATH_ENV "PATH=/opt/tern/bin:/opt/tern/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int console_fd = -1;

static void logmsg(const char *fmt, ...)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "tern-init: ");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	int fd = console_fd >= 0 ? console_fd : STDERR_FILENO;
	ssize_t w = write(fd, buf, (size_t)n);
	(void)w;
}

static void power_off(int status)
{
	sync();
	if (getpid() != 1)
		exit(status);
	reboot(RB_POWER_OFF);
	/* Only reached if the power-off request itself failed. */
	logmsg("power off failed: %s", strerror(errno));
	for (;;)
		pause();
}

static pid_t start_agent(char **argv)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		return pid;

	/* Child: undo what PID 1 set for itself, then become the agent. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	if (console_fd >= 0)
		close(console_fd);
	setsid();

	/* Keep the inherited environment, override what the agent depends on. */
	putenv("UV_THREADPOOL_SIZE=8");
	putenv(AGENT_PATH_ENV);
	if (!getenv("HOME"))
		putenv("HOME=/");
	execv(argv[0], argv);
	fprintf(stderr, "tern-init: cannot execute %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: tern-init PROGRAM [ARGS...]\n");
		return 2;
	}

	if (getpid() == 1)
		console_fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	else
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); /* reap orphans as PID 1 would */

	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	pid_t agent = start_agent(argv + 1);
	if (agent < 0) {
		logmsg("cannot start %s: %s", argv[1], strerror(errno));
		power_off(127);
	}

	for (;;) {
		int st = 0;
		pid_t pid = waitpid(-1, &st, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			/* ECHILD with the agent still unreaped cannot happen; stop anyway. */
			logmsg("waitpid failed: %s", strerror(errno));
			power_off(1);
		}
		if (pid != agent)
			continue; /* a reaped orphan */

		int code;
		if (WIFEXITED(st)) {
			code = WEXITSTATUS(st);
			logmsg("agent (pid %d) exited with status %d; powering off", (int)pid, code);
		} else {
			code = 128 + WTERMSIG(st);
			logmsg("agent (pid %d) killed by signal %d; powering off", (int)pid, WTERMSIG(st));
		}
		power_off(code);
	}
}
