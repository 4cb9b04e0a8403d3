"""What a lab leaves on the machine, looked up by every means `down` is expected to clean."""

import os

import docker
from pyroute2 import IPRoute

from testbed import state
from testbed.runtime.docker import LAB


def host_links() -> set[str]:
    with IPRoute() as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def of(name: str) -> list[str]:
    client = docker.from_env()
    found = [f"container {c.name}"
             for c in client.containers.list(all=True, filters={"label": f"{LAB}={name}"}, ignore_removed=True)]
    found += [f"network {n.name}" for n in client.networks.list(filters={"label": f"{LAB}={name}"})]
    if os.path.exists(f"/run/netns/testbed-{name}"):
        found.append("netns")
    for path in (state.root() / name, state.root() / f".{name}.lock", state.run_root() / name):
        if path.exists():
            found.append(str(path))
    return found
