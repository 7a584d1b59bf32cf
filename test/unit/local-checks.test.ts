import { describe, expect, it } from 'vitest';
import { parseListeners } from '../../src/host/local-checks.js';

describe('ss listener parsing', () => {
  it('reads protocol, address (wildcards, zones, brackets), port and process', () => {
    const text = [
      'udp UNCONN 0      0              *:53         *:* users:(("python3",pid=12353,fd=4))',
      'udp UNCONN 0      0      127.0.0.53%lo:53    0.0.0.0:*',
      'tcp LISTEN 0      128    127.0.0.1:8080 0.0.0.0:* users:(("redis-server",pid=9,fd=6))',
      'tcp LISTEN 0      4096      0.0.0.0:22      0.0.0.0:*',
      'tcp LISTEN 0      4096         [::]:22         [::]:*',
      'tcp LISTEN 0      4096 [fd00:18::1]:443        [::]:*',
      'udp UNCONN 0      0    [fe80::1]%eth0:546      [::]:*',
      '',
    ].join('\n');
    expect(parseListeners(text)).toEqual([
      { proto: 'udp', port: 53, process: 'python3 (pid 12353)' },
      { proto: 'udp', addr: '127.0.0.53', port: 53 },
      { proto: 'tcp', addr: '127.0.0.1', port: 8080, process: 'redis-server (pid 9)' },
      { proto: 'tcp', port: 22 },
      { proto: 'tcp', port: 22 },
      { proto: 'tcp', addr: 'fd00:18::1', port: 443 },
      { proto: 'udp', addr: 'fe80::1', port: 546 },
    ]);
  });

  it('reads ss -S output, which has no protocol column', () => {
    expect(parseListeners('LISTEN 0 128 198.18.1.1:3868 0.0.0.0:*\n', 'sctp')).toEqual([{ proto: 'sctp', addr: '198.18.1.1', port: 3868 }]);
  });
});
