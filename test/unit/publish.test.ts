import { describe, expect, it } from 'vitest';
import { parsePublish } from '../../src/config/publish.js';

describe('Docker -p syntax', () => {
  it.each([
    ['8080:80', { hostPort: { from: 8080, to: 8080 }, containerPort: { from: 80, to: 80 }, proto: 'tcp' }],
    ['127.0.0.1:6379:6379/tcp', { hostIp: '127.0.0.1', hostPort: { from: 6379, to: 6379 }, containerPort: { from: 6379, to: 6379 }, proto: 'tcp' }],
    ['198.18.1.1:8080:80/udp', { hostIp: '198.18.1.1', hostPort: { from: 8080, to: 8080 }, containerPort: { from: 80, to: 80 }, proto: 'udp' }],
    ['[fd00::1]:8080:80', { hostIp: 'fd00::1', hostPort: { from: 8080, to: 8080 }, containerPort: { from: 80, to: 80 }, proto: 'tcp' }],
    ['[FD00:0::1]:53:53/sctp', { hostIp: 'fd00::1', hostPort: { from: 53, to: 53 }, containerPort: { from: 53, to: 53 }, proto: 'sctp' }],
    ['30000-30010:30000-30010', { hostPort: { from: 30000, to: 30010 }, containerPort: { from: 30000, to: 30010 }, proto: 'tcp' }],
    ['31000-31002:30000-30002/UDP', { hostPort: { from: 31000, to: 31002 }, containerPort: { from: 30000, to: 30002 }, proto: 'udp' }],
    [':8080:80', { hostPort: { from: 8080, to: 8080 }, containerPort: { from: 80, to: 80 }, proto: 'tcp' }],
    ['0.0.0.0:8080:80', { hostIp: '0.0.0.0', hostPort: { from: 8080, to: 8080 }, containerPort: { from: 80, to: 80 }, proto: 'tcp' }],
    ['[::]:8080:80', { hostIp: '::', hostPort: { from: 8080, to: 8080 }, containerPort: { from: 80, to: 80 }, proto: 'tcp' }],
  ])('parses %s', (spec, expected) => {
    expect(parsePublish(spec)).toEqual(expected);
  });

  it.each([
    ['80', /no host port/],
    ['127.0.0.1::80', /empty host port/],
    ['8080:80/icmp', /protocol "icmp"/],
    ['8000-8010:80', /same length/],
    ['70000:80', /host port "70000"/],
    ['8080:0', /container port "0"/],
    ['fd00::1:8080:80', /not of the form|not an IPv4/],
    ['[fd00::1:8080:80', /unclosed/],
    ['[198.18.0.1]:80:80', /not an IPv6/],
    ['300.1.1.1:80:80', /not an IPv4/],
    ['9-8:9-8', /start is above its end/],
    ['[::ffff:198.18.1.1]:80:80', /IPv4-mapped/],
    ['224.0.0.1:80:80', /multicast/],
    ['255.255.255.255:80:80', /broadcast/],
    ['[ff02::1]:80:80', /multicast/],
  ])('refuses %s with a reason', (spec, reason) => {
    const result = parsePublish(spec);
    expect(typeof result).toBe('string');
    expect(result).toMatch(reason);
  });
});
