// Linux CPU lists ("0-3,5", as in cpuset.cpus, /sys/devices/system/cpu/online
// and /proc/<pid>/status Cpus_allowed_list): parsed strictly into sorted,
// distinct CPU numbers and written back in the kernel's compact form.

/** The largest CPU number a list may name (the kernel's NR_CPUS ceiling). */
const MAX_CPU = 8191;

/**
 * The CPUs of `list`, sorted and distinct. Throws an Error saying what is
 * wrong (an empty list, an entry that is not N or N-M with N <= M, a number
 * past MAX_CPU); callers add which key it came from.
 */
export function parseCpuList(list: string): number[] {
  const text = list.trim();
  if (text === '') throw new Error('empty CPU list');
  const cpus = new Set<number>();
  for (const entry of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(entry.trim());
    if (!m) throw new Error(`${JSON.stringify(entry)} is not a CPU number or range (want N or N-M)`);
    const first = Number(m[1]);
    const last = m[2] === undefined ? first : Number(m[2]);
    if (first > MAX_CPU || last > MAX_CPU) throw new Error(`${JSON.stringify(entry)} names a CPU past ${MAX_CPU}`);
    if (last < first) throw new Error(`${JSON.stringify(entry)} is a range that ends before it starts`);
    for (let c = first; c <= last; c++) cpus.add(c);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** `cpus` (any order, duplicates allowed) as a compact list: [0,1,2,5] -> "0-2,5". */
export function formatCpuList(cpus: Iterable<number>): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
