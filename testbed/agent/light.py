"""What the agent's process leaves out of memory.

pyroute2's package module imports every part of the library (NDB, IPDB, a console, an HTTP server, wireless,
devlink...) as soon as any part of it is imported: about 9 MiB of memory and a tenth of a second of CPU in
every agent, which uses the rtnetlink socket alone. The agent's process registers the package as a bare one
before anything imports it; each part it uses is then imported on its own, from its own module."""

from __future__ import annotations

import importlib.util
import sys
import types


def bare_pyroute2() -> None:
    """Only for a process of its own (the agent, the command line): where other code may import the library
    (pytest and its plugins), `from pyroute2 import X` must keep working."""
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType("pyroute2")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["pyroute2"] = package
    # IPRoute's mixin for pyroute2's own tests: inert unless they switch it on, and it imports unittest.mock
    lab = types.ModuleType("pyroute2.lab")
    lab.LAB_API = type("LAB_API", (), {})  # type: ignore[attr-defined]
    lab.use_mock, lab.registry = False, []  # type: ignore[attr-defined]
    sys.modules["pyroute2.lab"] = lab


def no_ssl() -> None:
    """asyncio imports ssl, and with it OpenSSL, at once: about 1.2 MiB in every agent, which needs it only for an
    HTTPS probe. It is left out until one asks (`ssl_module`)."""
    if "asyncio" not in sys.modules:
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]


def ssl_module() -> types.ModuleType:
    """ssl, imported now, and handed to the parts of asyncio that took it as missing."""
    if sys.modules.get("ssl", False) is None:
        del sys.modules["ssl"]
    import ssl

    for name in ("asyncio.base_events", "asyncio.selector_events"):
        if (module := sys.modules.get(name)) is not None and getattr(module, "ssl", None) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    # the TLS protocol's module defines names from ssl as it loads: loaded again, it has them
    if (proto := sys.modules.get("asyncio.sslproto")) is not None and getattr(proto, "ssl", None) is None:
        importlib.reload(proto)
    return ssl
