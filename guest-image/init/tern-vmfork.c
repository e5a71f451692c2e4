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

static int fail(const char *step)
{
	fprintf(stderr, "tern-vmfork: %s: %s\n", step, strerror(errno));
	return 1;
}

static int reseed(void)
{
	struct {
		struct rand_pool_info info;
		unsigned char buf[MAX_ENTROPY];
	} e;
	size_t n = 0;
	while (n < MAX_ENTROPY) {
		ssize_t r = read(STDIN_FILENO, e.buf + n, MAX_ENTROPY - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fail("read entropy");
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n < 32) {
		errno = EINVAL;
		return fail("want at least 32 bytes of entropy on stdin");
	}
	int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open /dev/urandom");
	e.info.entropy_count = (int)(n * 8);
	e.info.buf_size = (int)n;
	if (ioctl(fd, RNDADDENTROPY, &e.info) < 0) {
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

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 6) {
		fprintf(stderr, "usage: tern-vmfork REALTIME_NS HOSTNAME [9P_TAG MOUNT_DIR TIMEOUT_MS] < ENTROPY\n");
		return 2;
	}
	char *end;
	errno = 0;
	long long ns = strtoll(argv[1], &end, 10);
	if (errno || *end || ns <= 0) {
		fprintf(stderr, "tern-vmfork: bad REALTIME_NS %s\n", argv[1]);
		return 2;
	}
	if (reseed())
		return 1;
	struct timespec ts = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
	if (clock_settime(CLOCK_REALTIME, &ts) < 0)
		return fail("clock_settime");
	if (sethostname(argv[2], strlen(argv[2])) < 0)
		return fail("sethostname");
	if (argc == 6 && mount_9p(argv[3], argv[4], strtol(argv[5], NULL, 10)))
		return 1;
	return 0;
}
