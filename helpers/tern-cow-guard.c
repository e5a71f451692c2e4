/*
 * tern-cow-guard.so: preloaded (LD_PRELOAD) into the QEMU of a template
 * clone. A clone maps its template's memory file privately (copy-on-write).
 * When the guest reports free pages (virtio-balloon free page reporting),
 * QEMU 7.2 discards them with ram_block_discard_range(), which for any
 * file-backed RAM first punches a hole in the file (fallocate PUNCH_HOLE)
 * and only then drops the mapping (madvise DONTNEED). On a private mapping
 * of a shared template that hole would zero the template's pages under the
 * template and every other clone. This library turns a hole punched into
 * that one file (named by TERN_COW_GUARD_FILE, compared by device and inode)
 * into a no-op that succeeds, so QEMU goes on to madvise(DONTNEED): the
 * clone's private copy is dropped and the page reads back as the template's.
 * Every other fallocate call passes through unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

static int guard_set;
static dev_t guard_dev;
static ino_t guard_ino;

__attribute__((constructor)) static void guard_init(void) {
	const char *file = getenv("TERN_COW_GUARD_FILE");
	struct stat st;
	if (file == NULL || *file == '\0') return;
	if (stat(file, &st) != 0) {
		/* Fail closed: a clone that could punch its template must not run. */
		fprintf(stderr, "tern-cow-guard: %s: cannot stat the template memory file\n", file);
		_exit(1);
	}
	guard_dev = st.st_dev;
	guard_ino = st.st_ino;
	guard_set = 1;
}

static int guarded(int fd, int mode) {
	struct stat st;
	if (!guard_set || !(mode & FALLOC_FL_PUNCH_HOLE)) return 0;
	return fstat(fd, &st) == 0 && st.st_dev == guard_dev && st.st_ino == guard_ino;
}

typedef int (*fallocate_fn)(int, int, off_t, off_t);

static int pass(const char *name, int fd, int mode, off_t offset, off_t len) {
	fallocate_fn real = (fallocate_fn)dlsym(RTLD_NEXT, name);
	if (real == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off_t offset, off_t len) {
	if (guarded(fd, mode)) return 0;
	return pass("fallocate64", fd, mode, offset, len);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
	if (guarded(fd, mode)) return 0;
	return pass("fallocate", fd, mode, offset, len);
}
