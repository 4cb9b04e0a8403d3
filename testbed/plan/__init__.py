"""Pure derivations from desired state: no I/O, unit-tested."""
