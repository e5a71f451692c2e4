/*
 * tern-vmfork: gives a VM restored from a template its own identity, before
 * any container runs in it. Every clone of a template resumes with the same
 * kernel random state, clock and names; this makes them its own.
 *
 * Usage: tern-vmfork REALTIME_NS HOSTNAME [9P_TAG MOUNT_DIR TIMEOUT_MS] < ENTROPY
 *
 *   ENTROPY      up to 512 random bytes from the host on stdin: mixed into the
 *                kernel's pool (credited), then the kernel's CRNG is reseeded
 *                at once (RNDRESEEDCRNG), so what any process reads from now
 *                on (getrandom, boot_id, ...) differs from every other clone.
 *   REALTIME_NS  the host's CLOCK_REALTIME in nanoseconds: the guest clock
 *                resumes where the template stopped, so it is set from it.
 *   HOSTNAME     the VM's own hostname.
 *   9P_TAG ...   mounts the virtio-9p share with that tag (hot-plugged or
 *                defined at the clone's launch) at MOUNT_DIR, retrying while
 *                the device is being probed, for at most TIMEOUT_MS.
 *
 * Exit status 0 on success; 1 with a message naming the failed step.
 *
 * Usage: tern-vmfork --serve
 *
 *   The agent's privileged helper, started once at the agent's boot (so a
 *   template's clones resume with it running: no process is started on
 *   their start path). Reads one request a line on stdin, fields separated
 *   by tabs, and answers each with a line "ok" or "err <step>: <reason>":
 *     identity REALTIME_NS HOSTNAME ENTROPY_HEX [9P_TAG MOUNT_DIR TIMEOUT_MS]
 *     mount SOURCE TARGET FSTYPE ro|rw DATA|-
 *     remount TARGET ro|rw DATA|-   a mounted filesystem made read-only or writable
 *     move SOURCE TARGET           moves a mount (MS_MOVE)
 *     umount TARGET now|lazy
 *     flushbufs DEVICE   drops what the kernel caches of a block device
 *                        (BLKFLSBUF): the host may have put another file
 *                        behind it since it was last read
 *   Exits at end of input.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENTROPY 512

#ifndef BLKFLSBUF
#define BLKFLSBUF _IO(0x12, 97)
#endif

/* The last failure, "<step>: <reason>": printed (command line) or answered (--serve). */
static char error[512];

static int fail(const char *step)
{
	snprintf(error, sizeof error, "%s: %s", step, strerror(errno));
	return 1;
}

struct entropy {
	struct rand_pool_info info;
	unsigned char buf[MAX_ENTROPY];
};

static int reseed(struct entropy *e, size_t n)
{
	if (n < 32) {
		errno = EINVAL;
		return fail("want at least 32 bytes of entropy");
	}
	int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open /dev/urandom");
	e->info.entropy_count = (int)(n * 8);
	e->info.buf_size = (int)n;
	if (ioctl(fd, RNDADDENTROPY, &e->info) < 0) {
		close(fd);
		return fail("RNDADDENTROPY");
	}
	if (ioctl(fd, RNDRESEEDCRNG) < 0) {
		close(fd);
		return fail("RNDRESEEDCRNG");
	}
	close(fd);
	return 0;
}

static int mount_9p(const char *tag, const char *dir, long timeout_ms)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return fail("mkdir shared directory");
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (mount(tag, dir, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144,cache=none") == 0)
			return 0;
		/* ENOENT: no 9p channel with that tag yet (the device is still being probed). */
		if (errno != ENOENT)
			return fail("mount 9p share");
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
		if (ms >= timeout_ms) {
			errno = ETIMEDOUT;
			return fail("mount 9p share (no device with that tag appeared)");
		}
		usleep(5000);
	}
}

/* Reseeds, sets the clock and the hostname, mounts the share if asked: a clone's identity. */
static int identity(const char *realtime_ns, const char *hostname, struct entropy *e, size_t n, char **share)
{
	char *end;
	errno = 0;
	long long ns = strtoll(realtime_ns, &end, 10);
	if (errno || *end || ns <= 0) {
		errno = EINVAL;
		return fail("bad REALTIME_NS");
	}
	if (reseed(e, n))
		return 1;
	struct timespec ts = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		return fail("clock_settime");
	if (sethostname(hostname, strlen(hostname)) < 0)
		return fail("sethostname");
	if (share && mount_9p(share[0], share[1], strtol(share[2], NULL, 10)))
		return 1;
	return 0;
}

static int unhex(const char *hex, struct entropy *e, size_t *n)
{
	size_t len = strlen(hex);
	if (len % 2 || len / 2 > MAX_ENTROPY) {
		errno = EINVAL;
		return fail("bad ENTROPY_HEX");
	}
	for (size_t i = 0; i < len / 2; i++) {
		unsigned int b;
		if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
			errno = EINVAL;
			return fail("bad ENTROPY_HEX");
		}
		e->buf[i] = (unsigned char)b;
	}
	*n = len / 2;
	return 0;
}

/* One request of --serve, its fields split: 0 done, 1 failed (error says why). */
static int request(char **f, int n)
{
	if (n >= 4 && !strcmp(f[0], "identity") && (n == 4 || n == 7)) {
		struct entropy e;
		size_t len;
		if (unhex(f[3], &e, &len))
			return 1;
		return identity(f[1], f[2], &e, len, n == 7 ? f + 4 : NULL);
	}
	if (n == 6 && !strcmp(f[0], "mount")) {
		if (strcmp(f[4], "ro") && strcmp(f[4], "rw")) {
			errno = EINVAL;
			return fail("mount: flags must be ro or rw");
		}
		unsigned long flags = strcmp(f[4], "ro") ? 0 : MS_RDONLY;
		if (mount(f[1], f[2], f[3], flags, strcmp(f[5], "-") ? f[5] : NULL) < 0)
			return fail("mount");
		return 0;
	}
	if (n == 4 && !strcmp(f[0], "remount")) {
		if (strcmp(f[2], "ro") && strcmp(f[2], "rw")) {
			errno = EINVAL;
			return fail("remount: flags must be ro or rw");
		}
		unsigned long flags = MS_REMOUNT | (strcmp(f[2], "ro") ? 0 : MS_RDONLY);
		if (mount(NULL, f[1], NULL, flags, strcmp(f[3], "-") ? f[3] : NULL) < 0)
			return fail("remount");
		return 0;
	}
	if (n == 3 && !strcmp(f[0], "move")) {
		if (mount(f[1], f[2], NULL, MS_MOVE, NULL) < 0)
			return fail("move");
		return 0;
	}
	if (n == 3 && !strcmp(f[0], "umount")) {
		if (umount2(f[1], strcmp(f[2], "lazy") ? 0 : MNT_DETACH) < 0)
			return fail("umount");
		return 0;
	}
	if (n == 2 && !strcmp(f[0], "flushbufs")) {
		int fd = open(f[1], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail("flushbufs: open");
		int r = ioctl(fd, BLKFLSBUF, 0);
		int saved = errno;
		close(fd);
		errno = saved;
		return r < 0 ? fail("flushbufs") : 0;
	}
	errno = EINVAL;
	return fail(n > 0 ? f[0] : "empty request");
}

static int serve(void)
{
	static char line[8192];
	while (fgets(line, sizeof line, stdin)) {
		char *f[8];
		int n = 0;
		line[strcspn(line, "\n")] = '\0';
		for (char *tok = line, *next; tok && n < 8; tok = next) {
			next = strchr(tok, '\t');
			if (next)
				*next++ = '\0';
			f[n++] = tok;
		}
		if (request(f, n))
			printf("err %s\n", error);
		else
			printf("ok\n");
		fflush(stdout);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && !strcmp(argv[1], "--serve"))
		return serve();
	if (argc != 3 && argc != 6) {
		fprintf(stderr, "usage: tern-vmfork REALTIME_NS HOSTNAME [9P_TAG MOUNT_DIR TIMEOUT_MS] < ENTROPY | tern-vmfork --serve\n");
		return 2;
	}
	struct entropy e;
	size_t n = 0;
	while (n < MAX_ENTROPY) {
		ssize_t r = read(STDIN_FILENO, e.buf + n, MAX_ENTROPY - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fail("read entropy");
			break;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (error[0] || identity(argv[1], argv[2], &e, n, argc == 6 ? argv + 3 : NULL)) {
		fprintf(stderr, "tern-vmfork: %s\n", error);
		return 1;
	}
	return 0;
}
