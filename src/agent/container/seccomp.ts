// OCI linux.seccomp -> a classic BPF program for seccomp(2), compiled here so
// the static launcher needs no libseccomp. Layout: check the architecture
// (x86_64; x32 and i386 calls get the default action when those
// architectures are listed, else the process is killed), then one block per
// (syscall, rule) in profile order: "nr matches and every argument condition
// holds" returns the rule's action; nothing matching returns defaultAction.
// Argument conditions compare all 64 bits, like libseccomp on 64-bit arches.
// Unknown syscall names are skipped with a warning (runc does the same).
import { invalidArgument } from '../../common/errors.js';
import type { PlanSeccomp } from './plan.js';
import { SYSCALLS_X86_64 } from './syscalls-x86_64.js';

export interface OciSeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface OciSeccompRule {
  names?: string[];
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[] | null;
}

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[] | null;
  flags?: string[] | null;
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: OciSeccompRule[] | null;
}

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const MAX_INSNS = 4096;

// seccomp_data offsets
const OFF_NR = 0;
const OFF_ARCH = 4;
const argLo = (i: number) => 16 + 8 * i;
const argHi = (i: number) => 20 + 8 * i;

// classic BPF opcodes
const LD_ABS = 0x20;
const JEQ = 0x15;
const JGT = 0x25;
const JGE = 0x35;
const AND = 0x54;
const RET = 0x06;

const RET_KILL_THREAD = 0x00000000;
const RET_KILL_PROCESS = 0x80000000;
const RET_TRAP = 0x00030000;
const RET_ERRNO = 0x00050000;
const RET_TRACE = 0x7ff00000;
const RET_LOG = 0x7ffc0000;
const RET_ALLOW = 0x7fff0000;

const FILTER_FLAGS: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC: 1,
  SECCOMP_FILTER_FLAG_LOG: 2,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4,
};

/** A jump target: an absolute label resolved after emission. */
type Target = number | { label: string };

interface Insn {
  code: number;
  jt: Target;
  jf: Target;
  k: number;
}

class Emitter {
  readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();
  private n = 0;
  label(): { label: string } {
    return { label: `L${this.n++}` };
  }
  place(l: { label: string }): void {
    this.labels.set(l.label, this.insns.length);
  }
  emit(code: number, k: number, jt: Target = 0, jf: Target = 0): void {
    this.insns.push({ code, jt, jf, k: k >>> 0 });
  }
  program(): Buffer {
    if (this.insns.length > MAX_INSNS) throw invalidArgument(`linux.seccomp: the filter needs ${this.insns.length} BPF instructions (limit ${MAX_INSNS})`);
    const buf = Buffer.alloc(this.insns.length * 8);
    this.insns.forEach((ins, i) => {
      const off = (t: Target): number => {
        if (typeof t === 'number') return t;
        const at = this.labels.get(t.label);
        if (at === undefined) throw new Error(`seccomp: unplaced label ${t.label}`);
        const d = at - (i + 1);
        if (d < 0 || d > 255) throw invalidArgument('linux.seccomp: a rule is too large for a BPF jump');
        return d;
      };
      buf.writeUInt16LE(ins.code, i * 8);
      buf.writeUInt8(off(ins.jt), i * 8 + 2);
      buf.writeUInt8(off(ins.jf), i * 8 + 3);
      buf.writeUInt32LE(ins.k, i * 8 + 4);
    });
    return buf;
  }
}

function actionValue(action: string, errnoRet: number | undefined, field: string): number {
  const errno = (n: number | undefined, dflt: number) => {
    const v = n ?? dflt;
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw invalidArgument(`${field}: errnoRet ${v} out of range`);
    return v;
  };
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return RET_KILL_THREAD;
    case 'SCMP_ACT_KILL_PROCESS':
      return RET_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return RET_TRAP;
    case 'SCMP_ACT_ERRNO':
      return (RET_ERRNO | errno(errnoRet, EPERM)) >>> 0;
    case 'SCMP_ACT_TRACE':
      return (RET_TRACE | errno(errnoRet, EPERM)) >>> 0;
    case 'SCMP_ACT_LOG':
      return RET_LOG;
    case 'SCMP_ACT_ALLOW':
      return RET_ALLOW;
    case 'SCMP_ACT_NOTIFY':
      throw invalidArgument(`${field}: SCMP_ACT_NOTIFY is not supported (no seccomp agent in the guest)`);
    default:
      throw invalidArgument(`${field}: unknown action ${JSON.stringify(action)}`);
  }
}

function u64(v: unknown, field: string): { hi: number; lo: number } {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidArgument(`${field}: value must be an integer`);
  const b = BigInt.asUintN(64, BigInt(v));
  return { hi: Number(b >> 32n), lo: Number(b & 0xffffffffn) };
}

/** Emit one argument condition: falls through when it holds, jumps to `fail` otherwise. */
function emitCondition(e: Emitter, a: OciSeccompArg, fail: Target, field: string): void {
  if (!Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw invalidArgument(`${field}.index: must be 0..5`);
  const i = a.index;
  const pass = e.label();
  const v = u64(a.value, `${field}.value`);
  switch (a.op) {
    case 'SCMP_CMP_EQ':
      e.emit(LD_ABS, argHi(i));
      e.emit(JEQ, v.hi, 0, fail);
      e.emit(LD_ABS, argLo(i));
      e.emit(JEQ, v.lo, 0, fail);
      break;
    case 'SCMP_CMP_NE':
      e.emit(LD_ABS, argHi(i));
      e.emit(JEQ, v.hi, 0, pass);
      e.emit(LD_ABS, argLo(i));
      e.emit(JEQ, v.lo, fail, 0);
      break;
    case 'SCMP_CMP_MASKED_EQ': {
      const d = u64(a.valueTwo ?? 0, `${field}.valueTwo`);
      e.emit(LD_ABS, argHi(i));
      e.emit(AND, v.hi);
      e.emit(JEQ, d.hi, 0, fail);
      e.emit(LD_ABS, argLo(i));
      e.emit(AND, v.lo);
      e.emit(JEQ, d.lo, 0, fail);
      break;
    }
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
      e.emit(LD_ABS, argHi(i));
      e.emit(JGT, v.hi, pass, 0);
      e.emit(JEQ, v.hi, 0, fail);
      e.emit(LD_ABS, argLo(i));
      e.emit(a.op === 'SCMP_CMP_GT' ? JGT : JGE, v.lo, 0, fail);
      break;
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE':
      e.emit(LD_ABS, argHi(i));
      e.emit(JGT, v.hi, fail, 0);
      e.emit(JEQ, v.hi, 0, pass);
      e.emit(LD_ABS, argLo(i));
      e.emit(a.op === 'SCMP_CMP_LT' ? JGE : JGT, v.lo, fail, 0);
      break;
    default:
      throw invalidArgument(`${field}.op: unknown operator ${JSON.stringify(a.op)}`);
  }
  e.place(pass);
}

/** Compile an OCI seccomp profile for x86_64. Throws InvalidArgument naming the bad field. */
export function compileSeccomp(profile: unknown, warnings: string[]): PlanSeccomp {
  if (typeof profile !== 'object' || profile === null) throw invalidArgument('linux.seccomp: must be an object');
  const p = profile as OciSeccomp;
  if (p.listenerPath) throw invalidArgument('linux.seccomp.listenerPath: seccomp notify agents are not supported');
  const defaultAction = actionValue(p.defaultAction, p.defaultErrnoRet, 'linux.seccomp.defaultAction');
  let flags = 0;
  for (const f of p.flags ?? []) {
    const bit = FILTER_FLAGS[f];
    if (bit === undefined) throw invalidArgument(`linux.seccomp.flags: ${f} is not supported`);
    flags |= bit;
  }
  const arches = new Set(p.architectures ?? []);
  for (const a of arches) {
    if (!['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'].includes(a)) {
      warnings.push(`linux.seccomp.architectures: ${a} ignored (the guest is x86_64)`);
    }
  }
  const otherArch = (name: string) => (arches.size === 0 || arches.has(name) ? defaultAction : RET_KILL_PROCESS);
  // 32-bit and x32 system calls: the profile's rules name x86_64 numbers only
  if (arches.has('SCMP_ARCH_X86') || arches.has('SCMP_ARCH_X32')) {
    warnings.push('linux.seccomp: i386/x32 system calls get the default action (rules are compiled for x86_64)');
  }

  const e = new Emitter();
  const native = e.label();
  e.emit(LD_ABS, OFF_ARCH);
  e.emit(JEQ, AUDIT_ARCH_X86_64, native, 0);
  const notI386 = e.label();
  e.emit(JEQ, AUDIT_ARCH_I386, 0, notI386);
  e.emit(RET, otherArch('SCMP_ARCH_X86'));
  e.place(notI386);
  e.emit(RET, RET_KILL_PROCESS);
  e.place(native);
  e.emit(LD_ABS, OFF_NR);
  const notX32 = e.label();
  e.emit(JGE, X32_SYSCALL_BIT, 0, notX32);
  e.emit(RET, otherArch('SCMP_ARCH_X32'));
  e.place(notX32);

  const unknown = new Set<string>();
  (p.syscalls ?? []).forEach((rule, r) => {
    const field = `linux.seccomp.syscalls[${r}]`;
    const action = actionValue(rule.action, rule.errnoRet, `${field}.action`);
    const args = rule.args ?? [];
    for (const name of rule.names ?? []) {
      const nr = SYSCALLS_X86_64[name];
      if (nr === undefined) {
        unknown.add(name);
        continue;
      }
      const next = e.label();
      e.emit(JEQ, nr, 0, next);
      args.forEach((a, j) => {
        emitCondition(e, a, next, `${field}.args[${j}]`);
      });
      e.emit(RET, action);
      e.place(next);
      // an argument check left an argument in A: reload the number
      if (args.length > 0) e.emit(LD_ABS, OFF_NR);
    }
  });
  e.emit(RET, defaultAction);
  if (unknown.size > 0) warnings.push(`linux.seccomp: unknown system calls skipped: ${[...unknown].sort().join(', ')}`);
  return { flags, program: e.program() };
}
