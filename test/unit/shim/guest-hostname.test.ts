// A sandbox's guest hostname, handed to every VM cloned from a template.
import { describe, expect, it } from 'vitest';
import { guestHostname } from '../../../src/shim/boot-paths';

describe('guestHostname', () => {
  it('is tern- and the first 12 characters of a 64-hex sandbox id', () => {
    const id = '3f9a1c0b7e2d4a6f8b1c3e5d7f9a0b2c4d6e8f0a1b3c5d7e9f0a2b4c6d8e0f1a';
    expect(guestHostname(id)).toBe('tern-3f9a1c0b7e2d');
  });

  it('turns anything but letters, digits and dashes into dashes, and drops trailing ones', () => {
    expect(guestHostname('web_1.default')).toBe('tern-web-1-defaul');
    expect(guestHostname('a.b c/d')).toBe('tern-a-b-c-d');
    expect(guestHostname('pod..........x')).toBe('tern-pod');
    expect(guestHostname('Ünïcode-pod')).toBe('tern--n-code-pod');
  });

  it('is tern for an empty id or one with nothing usable in its first 12 characters', () => {
    expect(guestHostname('')).toBe('tern');
    expect(guestHostname('____________abc')).toBe('tern');
  });
});
