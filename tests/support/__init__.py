"""Test infrastructure shared by edgecost's tests: real sshd hosts, an arm64 root under qemu."""
