// Sample log files of one sandbox for the `tern logs` tests, in the formats
// the shim and the guest write them: shim.log lines as the shim's pino logger
// writes them (base pid, then namespace and sandbox, a container's pid
// after pino's own), and a console.log as QEMU keeps the guest's serial
// console: CRLF line ends, the firmware's escape sequences and unterminated
// "Booting from ROM.." with the next line glued to it, printk time stamps
// since boot, and the agent's pino lines ("agent serving" tells the guest's
// uptime, hence its boot time: T0 - 290 ms).
export const T0 = 1_795_431_600_000;

const shim = (dt: number, level: number, fields: string, msg: string) =>
  `{"level":${level},"time":${T0 + dt},"pid":4242,"name":"containerd-shim-tern-v2","namespace":"tern-unit","sandbox":"pod1"${fields},"msg":"${msg}"}\n`;

export const SHIM_LINES = [
  shim(0, 30, ',"socket":"/run/containerd/s/0a1b","shimLog":"/run/tern/sb/0a1b/shim.log"', 'shim serving'),
  shim(100, 30, ',"id":"pod1","accel":"tcg","reason":"no vmx/svm in /proc/cpuinfo"', 'hypervisor acceleration chosen'),
  shim(200, 30, ',"id":"pod1","pid":5151,"accel":"tcg"', 'qemu started'),
  shim(9500, 30, ',"accel":"tcg","qemuPid":5151,"vmLaunched":210', 'sandbox VM ready'),
  shim(9900, 30, ',"container":"c1","pid":158,"layers":1,"sinceBootMs":9900', 'container created'),
  shim(10_000, 40, ',"container":"c1","err":"stdout fifo gone"', 'stdio fifo write failed'),
];

const agent = (dt: number, fields: string, msg: string) => `{"level":30,"time":${T0 + dt},"pid":139,"name":"tern-agent"${fields},"msg":"${msg}"}`;

export const CONSOLE_TEXT = `${[
  '\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)',
  'Booting from ROM..[    2.104816] virtio_blk virtio2: [vda] 524288 512-byte logical blocks (268 MB/256 MiB)',
  agent(9000, ',"port":"/dev/vport0p1","bootMs":12,"uptimeMs":9290', 'agent serving'),
  agent(9800, ',"container":"c1","pid":158', 'container created'),
  '[   12.345678] Out of memory: Killed process 201 (sh) total-vm:2456kB, anon-rss:1024kB',
].join('\r\n')}\r\n`;

/** The merged order: [source, what identifies the line]. */
export const MERGED = [
  ['shim', 'shim serving'],
  ['shim', 'hypervisor acceleration chosen'],
  ['shim', 'qemu started'],
  ['guest', 'SeaBIOS'],
  ['guest', 'Booting from ROM..'],
  ['guest', 'virtio_blk'],
  ['guest', 'agent serving'],
  ['shim', 'sandbox VM ready'],
  ['guest', 'container created'],
  ['shim', 'container created'],
  ['shim', 'stdio fifo write failed'],
  ['guest', 'Out of memory'],
] as const;
