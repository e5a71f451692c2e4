// The request a clone's agent accepts to adopt its own identity, checked
// before the helper (tern-vmfork --serve) gets its request fields.
import { describe, expect, it } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { adoptIdentity, identityFields, type IdentityRequest } from '../../../src/agent/identity';
import type { GuestHelper } from '../../../src/agent/guest-helper';
import { SHARED_MOUNT, SHARED_TAG } from '../../../src/agent/shared-dir';

const good: IdentityRequest = {
  entropy: Buffer.alloc(64, 7),
  realtime_ns: '1767225600123456789',
  hostname: 'tern-0123456789ab',
  machine_id: '0123456789abcdef0123456789abcdef',
  mount_shared: false,
};

function rejection(r: IdentityRequest): TernError {
  try {
    identityFields(r);
  } catch (err) {
    expect(err).toBeInstanceOf(TernError);
    expect((err as TernError).code).toBe('InvalidArgument');
    return err as TernError;
  }
  throw new Error(`accepted ${JSON.stringify({ ...r, entropy: r.entropy.length })}`);
}

describe('identityFields', () => {
  it('gives the time in ns and the hostname, plus the share to mount when asked', () => {
    const hex = '07'.repeat(64);
    expect(identityFields(good)).toEqual(['identity', '1767225600123456789', 'tern-0123456789ab', hex]);
    expect(identityFields({ ...good, mount_shared: true })).toEqual([
      'identity',
      '1767225600123456789',
      'tern-0123456789ab',
      hex,
      SHARED_TAG,
      SHARED_MOUNT,
      '5000',
    ]);
    expect([SHARED_TAG, SHARED_MOUNT]).toEqual(['tern-shared', '/run/tern-agent/shared']);
  });

  it('dates the host time forward by how long ago it was sent (whole microseconds; never back)', () => {
    expect(identityFields(good, 212.3456789)[1]).toBe('1767225600335802789');
    expect(identityFields(good, 0)[1]).toBe('1767225600123456789');
    expect(identityFields(good, -5)[1]).toBe('1767225600123456789');
  });

  it('takes the time as a number, a bigint or a decimal string, without losing precision', () => {
    expect(identityFields({ ...good, realtime_ns: 1767225600123456789n })[1]).toBe('1767225600123456789');
    expect(identityFields({ ...good, realtime_ns: 1_000_000 })[1]).toBe('1000000');
  });

  it('refuses a time that is no integer, and a hostname ending in a dot or dash, as InvalidArgument', () => {
    expect(rejection({ ...good, realtime_ns: 'soon' }).message).toMatch(/realtime_ns "soon" is not an integer/);
    expect(rejection({ ...good, realtime_ns: 1.5 }).message).toMatch(/realtime_ns "1.5"/);
    rejection({ ...good, hostname: 'tern-' });
    rejection({ ...good, hostname: 'tern.' });
  });

  it('accepts 32 and 512 bytes of entropy, nothing outside', () => {
    expect(() => identityFields({ ...good, entropy: Buffer.alloc(32) })).not.toThrow();
    expect(() => identityFields({ ...good, entropy: Buffer.alloc(512) })).not.toThrow();
    expect(rejection({ ...good, entropy: Buffer.alloc(31) }).message).toMatch(/entropy must be 32\.\.512 bytes, got 31/);
    expect(rejection({ ...good, entropy: Buffer.alloc(513) }).message).toMatch(/got 513/);
    expect(rejection({ ...good, entropy: 'x'.repeat(64) as unknown as Buffer }).message).toMatch(/entropy/);
  });

  it.each(['', '-tern', 'tern_1', 'tern 1', 'a/b', 'x'.repeat(64), 'tern\n'])('rejects hostname %j', (hostname) => {
    expect(rejection({ ...good, hostname }).message).toMatch(/hostname/);
  });

  it('accepts a 63-character hostname', () => {
    expect(identityFields({ ...good, hostname: 'x'.repeat(63) })[2]).toBe('x'.repeat(63));
  });

  it.each(['', '0123456789ABCDEF0123456789ABCDEF', '0123456789abcdef0123456789abcde', '0123456789abcdef0123456789abcdef0', 'g123456789abcdef0123456789abcdef'])(
    'rejects machine_id %j',
    (machine_id) => {
      expect(rejection({ ...good, machine_id }).message).toMatch(/machine_id must be 32 lower-case hex digits/);
    },
  );

  // An empty string reads as 0.
  it.each([0, '0', '', -1, '-5', 0n])('rejects realtime_ns %s', (realtime_ns) => {
    expect(rejection({ ...good, realtime_ns }).message).toMatch(/is not a time/);
  });

  it.each(['soon', '1.5', 1.5])('does not accept a realtime_ns that is no integer: %j', (realtime_ns) => {
    expect(() => identityFields({ ...good, realtime_ns })).toThrow();
  });
});

describe('adoptIdentity', () => {
  it("gives the helper the host's time plus the time since its bytes were read", async () => {
    const asked: string[][] = [];
    const helper = { request: async (f: string[]) => void asked.push(f) } as unknown as GuestHelper;
    const readAt = performance.now() - 200;
    await adoptIdentity(good, helper, readAt);
    const late = BigInt(asked[0]![1]!) - 1767225600123456789n;
    expect(late).toBeGreaterThanOrEqual(200_000_000n);
    expect(late).toBeLessThan(60_000_000_000n);
    await adoptIdentity(good, helper);
    expect(asked[1]![1]).toBe('1767225600123456789');
  });
});
