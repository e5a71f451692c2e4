/*
 * tern-cow-guard.so: preloaded (LD_PRELOAD) into the QEMU of a template
 * clone. A clone maps its template's memory file (on a tmpfs) privately,
 * copy-on-write. The file is named by TERN_COW_GUARD_FILE and recognised by
 * device and inode. Two things would otherwise go wrong:
 *
 * 1. Discards. When the guest reports free pages (virtio-balloon free page
 *    reporting), QEMU 7.2 discards them with ram_block_discard_range(), which
 *    for file-backed RAM first punches a hole in the file (fallocate
 *    PUNCH_HOLE) and only then drops the mapping (madvise DONTNEED). On a
 *    private mapping of a shared template that hole would zero the template's
 *    pages under the template and every other clone. A hole punched into that
 *    file becomes a no-op that succeeds, so QEMU goes on to madvise(DONTNEED):
 *    the clone's private copy is dropped and the page reads back as the
 *    template's. Every other fallocate call passes through unchanged.
 *
 * 2. Holes. The template's file is sparse: guest memory its VM never touched
 *    is a hole. A tmpfs fills a hole with a new zeroed page of the file on
 *    any page fault, a private mapping's copy-on-write fault included, so
 *    every page a clone touches for the first time was added to the
 *    template's file for good (a 300 MiB read in one clone grew a 1 GiB
 *    template from 229 to 606 MiB), and memory the clone gave back stayed
 *    with the host's tmpfs. When QEMU maps the file privately, every hole of
 *    at least MIN_HOLE is mapped over with anonymous memory instead (it reads
 *    as zeros, as the hole does): a clone's first touch there costs the clone
 *    one page, and a discard frees it. QEMU's later MADV_HUGEPAGE on that
 *    mapping is dropped, so those pages stay 4 KiB as the rest of a clone's
 *    memory: a 2 MiB huge page for each 4 KiB the guest touches would undo
 *    what the clone saves.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

/* Holes smaller than this stay file-backed; the cap bounds the mappings (vm.max_map_count). */
#define MIN_HOLE (64 * 1024)
#define MAX_OVERLAYS 4096

typedef int (*fallocate_fn)(int, int, off_t, off_t);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*madvise_fn)(void *, size_t, int);

static int guard_set;
static dev_t guard_dev;
static ino_t guard_ino;
static mmap_fn real_mmap, real_mmap64;
static madvise_fn real_madvise;
/* The private mapping of the template's file whose holes were mapped over. */
static uintptr_t overlaid_start, overlaid_end;

/* The next definition of a symbol; the process cannot go on without it. */
static void *next(const char *name) {
	void *f = dlsym(RTLD_NEXT, name);
	if (f == NULL) {
		fprintf(stderr, "tern-cow-guard: no %s to wrap\n", name);
		_exit(1);
	}
	return f;
}

/* Resolved on first use as well: another library's constructor may map memory before ours runs. */
static void resolve(void) {
	if (real_mmap == NULL) real_mmap = (mmap_fn)next("mmap");
	if (real_mmap64 == NULL) real_mmap64 = (mmap_fn)next("mmap64");
	if (real_madvise == NULL) real_madvise = (madvise_fn)next("madvise");
}

__attribute__((constructor)) static void guard_init(void) {
	const char *file = getenv("TERN_COW_GUARD_FILE");
	struct stat st;
	resolve();
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

static int is_template(int fd, struct stat *st) {
	return guard_set && fd >= 0 && fstat(fd, st) == 0 && st->st_dev == guard_dev && st->st_ino == guard_ino;
}

static int pass(const char *name, int fd, int mode, off_t offset, off_t len) {
	fallocate_fn real = (fallocate_fn)dlsym(RTLD_NEXT, name);
	if (real == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real(fd, mode, offset, len);
}

int fallocate64(int fd, int mode, off_t offset, off_t len) {
	struct stat st;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && is_template(fd, &st)) return 0;
	return pass("fallocate64", fd, mode, offset, len);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
	struct stat st;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && is_template(fd, &st)) return 0;
	return pass("fallocate", fd, mode, offset, len);
}

/* Maps anonymous memory over each hole of the file in [off, off + len) of the mapping at base; -1 on failure. */
static int overlay_holes(char *base, size_t len, int prot, int flags, int fd, off_t off, off_t size) {
	long page = sysconf(_SC_PAGESIZE);
	off_t end = off + (off_t)len < size ? off + (off_t)len : size;
	off_t pos = off;
	off_t saved = lseek(fd, 0, SEEK_CUR);
	int n = 0, rc = 0;
	while (pos < end && n < MAX_OVERLAYS) {
		off_t data = lseek(fd, pos, SEEK_DATA);
		if (data < 0 && errno != ENXIO) {
			rc = -1;
			break;
		}
		if (data < 0 || data > end) data = end;
		off_t from = (pos + page - 1) / page * page, to = data / page * page;
		if (to - from >= MIN_HOLE) {
			void *q = real_mmap(base + (from - off), (size_t)(to - from), prot,
					    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | (flags & MAP_NORESERVE), -1, 0);
			if (q == MAP_FAILED) {
				rc = -1;
				break;
			}
			n++;
		}
		if (data >= end) break;
		pos = lseek(fd, data, SEEK_HOLE);
		if (pos < 0) {
			rc = -1;
			break;
		}
	}
	if (saved >= 0) lseek(fd, saved, SEEK_SET);
	return rc;
}

static void *guarded_mmap(mmap_fn real, void *addr, size_t len, int prot, int flags, int fd, off_t off) {
	struct stat st;
	void *p = real(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED || (flags & MAP_TYPE) != MAP_PRIVATE || !is_template(fd, &st)) return p;
	if (overlay_holes(p, len, prot, flags, fd, off, st.st_size) != 0) {
		int err = errno;
		fprintf(stderr, "tern-cow-guard: cannot map the template's holes anonymously: errno %d\n", err);
		munmap(p, len);
		errno = err;
		return MAP_FAILED;
	}
	overlaid_start = (uintptr_t)p;
	overlaid_end = (uintptr_t)p + len;
	return p;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
	resolve();
	return guarded_mmap(real_mmap64, addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
	resolve();
	return guarded_mmap(real_mmap, addr, len, prot, flags, fd, off);
}

int madvise(void *addr, size_t len, int advice) {
	uintptr_t a = (uintptr_t)addr;
	resolve();
	if (advice == MADV_HUGEPAGE && overlaid_end != 0 && a >= overlaid_start && a + len <= overlaid_end) return 0;
	return real_madvise(addr, len, advice);
}
