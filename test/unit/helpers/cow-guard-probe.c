/*
 * Test probe for tern-cow-guard.so: plays a clone's QEMU on FILE, a sparse
 * template memory file of 8 MiB with data at 0 and at 4 MiB. Maps it
 * privately, checks every page reads as the file does, writes every page,
 * punches a hole over the first page (as a discard does), asks for huge
 * pages, and prints what the file and the mapping became:
 *   blocks-before blocks-after first-byte-in-file punch-rc mappings huge-page-mappings
 * (the mappings that make up the 8 MiB, and those of them marked for
 * transparent huge pages, from /proc/self/smaps).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024L * 1024L)
#define SIZE (8 * MIB)

/* Counts the mappings in [m, m + SIZE) and those whose VmFlags have hg (MADV_HUGEPAGE). */
static void count_mappings(char *m, int *all, int *huge) {
	char line[512];
	int inside = 0;
	FILE *f = fopen("/proc/self/smaps", "r");
	*all = *huge = 0;
	if (f == NULL) return;
	while (fgets(line, sizeof line, f) != NULL) {
		unsigned long start, end;
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			inside = start >= (unsigned long)m && end <= (unsigned long)m + SIZE;
			*all += inside;
		} else if (inside && strncmp(line, "VmFlags:", 8) == 0 && strstr(line, " hg") != NULL) {
			(*huge)++;
		}
	}
	fclose(f);
}

static void die(const char *what) {
	perror(what);
	exit(2);
}

int main(int argc, char **argv) {
	struct stat st;
	char first;
	long page = sysconf(_SC_PAGESIZE);
	if (argc != 2) return 2;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) != 0) die("create");
	if (pwrite(fd, "A", 1, 0) != 1 || pwrite(fd, "B", 1, 4 * MIB) != 1) die("pwrite");
	if (fstat(fd, &st) != 0) die("fstat");
	long before = st.st_blocks;
	char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (m == MAP_FAILED) die("mmap");
	for (long off = 0; off < SIZE; off += page) {
		char want = off == 0 ? 'A' : off == 4 * MIB ? 'B' : 0;
		if (m[off] != want) {
			fprintf(stderr, "byte at %ld reads %d, not %d\n", off, m[off], want);
			return 3;
		}
		m[off] = 'x';
	}
	int punch = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, page);
	int all, huge;
	/* As QEMU does, whatever the answer (a kernel without transparent huge pages refuses). */
	(void)madvise(m, SIZE, MADV_HUGEPAGE);
	count_mappings(m, &all, &huge);
	if (fstat(fd, &st) != 0 || pread(fd, &first, 1, 0) != 1) die("read back");
	printf("%ld %ld %c %d %d %d\n", before, (long)st.st_blocks, first ? first : '0', punch, all, huge);
	return 0;
}
