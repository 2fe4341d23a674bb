//! QEMU command lines for lab VMs, built from a node's resolved hardware profile.
