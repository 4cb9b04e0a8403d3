"""Links: the underlay between nodes, each node's pod bridge, the overlay, and the pods' veths.

One module per link type. `overlay(name)` is the seam where bgp and host-gw modes plug in.
"""

from __future__ import annotations

from testbed.actions import Action


def overlay(name: str) -> Action:
    from testbed.network.vxlan import Vxlan

    modes: dict[str, type] = {"vxlan": Vxlan}
    return modes[name]()
