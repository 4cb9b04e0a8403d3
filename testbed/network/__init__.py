"""Links: the underlay between machines, each node's pod bridge, the pod network (one registered mode, see
registry.py and modes/), and the pods' veths. One module per link type."""
