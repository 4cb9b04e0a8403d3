"""Pod network modes, one module each; each registers itself with testbed.network.registry."""
