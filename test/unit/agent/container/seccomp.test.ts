// The seccomp compiler, run through a small classic-BPF interpreter: each
// comparison operator on 64-bit arguments, the architecture checks, actions,
// and the errors that name the field.
import { describe, expect, it } from 'vitest';
import { compileSeccomp, type OciSeccomp } from '../../../../src/agent/container/seccomp.js';

const ALLOW = 0x7fff0000;
const ERRNO = (e: number) => (0x00050000 | e) >>> 0;
const KILL_PROCESS = 0x80000000;
const X86_64 = 0xc000003e;
const I386 = 0x40000003;

/** Runs a sock_filter program over one seccomp_data (nr, arch, args). */
function runBpf(prog: Buffer, nr: number, arch: number, args: bigint[] = []): number {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr, 0);
  data.writeUInt32LE(arch, 4);
  args.forEach((a, i) => {
    data.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i);
  });
  let acc = 0;
  for (let pc = 0; pc < prog.length / 8; ) {
    const code = prog.readUInt16LE(pc * 8);
    const jt = prog.readUInt8(pc * 8 + 2);
    const jf = prog.readUInt8(pc * 8 + 3);
    const k = prog.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case 0x20:
        acc = data.readUInt32LE(k);
        break;
      case 0x54:
        acc = (acc & k) >>> 0;
        break;
      case 0x15:
        pc += acc === k ? jt : jf;
        break;
      case 0x25:
        pc += acc > k ? jt : jf;
        break;
      case 0x35:
        pc += acc >= k ? jt : jf;
        break;
      case 0x06:
        return k >>> 0;
      default:
        throw new Error(`opcode ${code.toString(16)}`);
    }
  }
  throw new Error('fell off the program');
}

const NR = { read: 0, write: 1, personality: 135, clone: 56, socket: 41, mkdir: 83 };
const compile = (p: OciSeccomp) => compileSeccomp(p, []).program;

describe('compileSeccomp', () => {
  it('applies names, actions and the default action', () => {
    const prog = compile({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      ],
    });
    expect(runBpf(prog, NR.read, X86_64)).toBe(ALLOW);
    expect(runBpf(prog, NR.write, X86_64)).toBe(ALLOW);
    expect(runBpf(prog, NR.mkdir, X86_64)).toBe(ERRNO(13));
    expect(runBpf(prog, NR.socket, X86_64)).toBe(ERRNO(38));
  });

  it('compares all 64 bits of arguments with every operator', () => {
    const big = 0x1_0000_0005;
    const rule = (op: string, value: number, valueTwo?: number) =>
      compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value, valueTwo, op }] }] });
    const hit = (prog: Buffer, v: bigint) => runBpf(prog, NR.personality, X86_64, [v]) === ERRNO(1);
    const cases: [string, number, bigint[], bigint[], number?][] = [
      ['SCMP_CMP_EQ', big, [BigInt(big)], [5n, 0x2_0000_0005n]],
      ['SCMP_CMP_NE', big, [5n, 0x2_0000_0005n], [BigInt(big)]],
      ['SCMP_CMP_GT', big, [BigInt(big) + 1n, 0x2_0000_0000n], [BigInt(big), 5n, 0xffffffffn]],
      ['SCMP_CMP_GE', big, [BigInt(big), 0x2_0000_0000n], [BigInt(big) - 1n, 0xffffffffn]],
      ['SCMP_CMP_LT', big, [BigInt(big) - 1n, 7n], [BigInt(big), 0x1_0000_0006n, 0x2_0000_0000n]],
      ['SCMP_CMP_LE', big, [BigInt(big), 0xffffffffn], [BigInt(big) + 1n, 0x2_0000_0000n]],
      ['SCMP_CMP_MASKED_EQ', 0x7e020000, [0n, 0x100n], [0x10000000n, 0x20000n], 0],
    ];
    for (const [op, value, yes, no, two] of cases) {
      const prog = rule(op, value, two);
      for (const v of yes) expect(hit(prog, v), `${op} ${v}`).toBe(true);
      for (const v of no) expect(hit(prog, v), `${op} ${v}`).toBe(false);
    }
  });

  it('ANDs the conditions of one rule and tries the next rule after a miss', () => {
    const prog = compile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        {
          names: ['socket'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: 97,
          args: [
            { index: 0, value: 40, op: 'SCMP_CMP_EQ' },
            { index: 1, value: 1, op: 'SCMP_CMP_EQ' },
          ],
        },
        { names: ['socket'], action: 'SCMP_ACT_KILL_PROCESS', args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }] },
      ],
    });
    expect(runBpf(prog, NR.socket, X86_64, [40n, 1n])).toBe(ERRNO(97));
    expect(runBpf(prog, NR.socket, X86_64, [40n, 2n])).toBe(ALLOW);
    expect(runBpf(prog, NR.socket, X86_64, [16n, 2n])).toBe(KILL_PROCESS);
    expect(runBpf(prog, NR.read, X86_64)).toBe(ALLOW);
  });

  it('gives i386 and x32 calls the default action when listed, else kills', () => {
    const listed = compile({
      defaultAction: 'SCMP_ACT_ERRNO',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
      syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
    });
    expect(runBpf(listed, 3, I386)).toBe(ERRNO(1));
    expect(runBpf(listed, 0x40000000, X86_64)).toBe(ERRNO(1));
    const only64 = compile({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64'] });
    expect(runBpf(only64, 3, I386)).toBe(KILL_PROCESS);
    expect(runBpf(only64, 0x40000000, X86_64)).toBe(KILL_PROCESS);
    expect(runBpf(only64, 0xb7, 0xc00000b7 /* aarch64 */)).toBe(KILL_PROCESS);
  });

  it('skips unknown system calls with a warning and maps flags', () => {
    const warnings: string[] = [];
    const r = compileSeccomp(
      {
        defaultAction: 'SCMP_ACT_ALLOW',
        flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'],
        syscalls: [{ names: ['not_a_syscall', 'read'], action: 'SCMP_ACT_LOG' }],
      },
      warnings,
    );
    expect(r.flags).toBe(6);
    expect(warnings).toEqual(['linux.seccomp: unknown system calls skipped: not_a_syscall']);
    expect(runBpf(r.program, NR.read, X86_64)).toBe(0x7ffc0000);
  });

  it('rejects what it cannot compile, naming the field', () => {
    const bad: [unknown, RegExp][] = [
      ['x', /linux\.seccomp: must be an object/],
      [
        { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_BOGUS' }] }] },
        /syscalls\[0\]\.args\[0\]\.op/,
      ],
      [
        { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1.5, op: 'SCMP_CMP_EQ' }] }] },
        /syscalls\[0\]\.args\[0\]\.value/,
      ],
      [{ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 70000 }, /defaultAction: errnoRet/],
    ];
    for (const [p, re] of bad) {
      expect(() => compileSeccomp(p, [])).toThrow(re);
    }
  });
});
