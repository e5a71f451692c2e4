// The serial of the VM's writable disk slot, which the host's command line
// gives it and the guest's agent finds it by (/sys/block/<dev>/serial).
export const WRITABLE_SLOT_SERIAL = 'tern-rw-slot';
