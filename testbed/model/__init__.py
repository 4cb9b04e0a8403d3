"""The input model: what users write (the topology file and Kubernetes manifests), read safely (reader), checked
field by field as the API server checks it, and loaded into typed objects (loader). Pure; it imports nothing
of testbed's behaviour, which all builds on it."""
