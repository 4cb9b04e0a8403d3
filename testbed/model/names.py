"""The value formats the API server checks (k8s.io/apimachinery/pkg/util/validation): DNS-1123 labels and
subdomains, DNS-1035 labels, qualified names, label values, IANA service names, port numbers, and the IP
addresses a Service or an EndpointSlice may not use. Each check returns the value or raises ValueError with the
reason; `At` names a field inside the object being checked, so an error points at that field, not its parent."""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator

from testbed.errors import show
from testbed.model.labels import dns_label as dns_label  # re-exported: most models name it from here

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUALIFIED_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_ANNOTATIONS = 256 * 1024  # bytes of keys and values together (TotalAnnotationSizeLimitB)
T = TypeVar("T")


class At(ValueError):
    """A reason that belongs to a field inside the object a validator checks (path relative to it)."""

    def __init__(self, path: tuple[str | int, ...], reason: str) -> None:
        super().__init__(reason)
        self.path = path


def at(path: tuple[str | int, ...], check: Callable[[T], Any], value: T) -> None:
    """check(value), its reason moved to the field at path."""
    try:
        check(value)
    except ValueError as err:
        raise At(path, str(err)) from None


def dns_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(f"{show(value)} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')")
    return value


def dns1035_label(value: str) -> str:
    if len(value) > 63 or not DNS1035_LABEL.match(value):
        raise ValueError(f"{show(value)} is not a DNS-1035 label (a lowercase letter first, then lowercase "
                         "letters, digits and '-', at most 63)")
    return value


def qualified_name(key: str, what: str = "key") -> str:
    """A label or annotation key: an optional DNS subdomain prefix and '/', then 1-63 alphanumerics, '-', '_'
    or '.', starting and ending with an alphanumeric."""
    if not isinstance(key, str):
        raise ValueError(f"{what} {show(key)} must be a string")
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        raise ValueError(f"{what} {show(key)}: prefix must be a DNS-1123 subdomain")
    if len(name) > 63 or not QUALIFIED_PART.match(name):
        raise ValueError(f"{what} {show(key)}: name must be 1-63 alphanumerics, '-', '_' or '.'")
    return key


def label_value(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"label {show(key)}: value must be a string (quote it in YAML)")
    if value and (len(value) > 63 or not QUALIFIED_PART.match(value)):
        raise ValueError(f"label {show(key)}: value {show(value)} must be empty or 1-63 alphanumerics, "
                         "'-', '_', '.'")
    return value


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        qualified_name(key, "label key")
        label_value(value, key)
    return labels


def check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    size = 0
    for key, value in annotations.items():
        qualified_name(key, "annotation key")
        if not isinstance(value, str):
            raise ValueError(f"annotation {show(key)}: value must be a string (quote it in YAML)")
        size += len(key) + len(value)
    if size > MAX_ANNOTATIONS:
        raise ValueError(f"annotations hold {size:,} bytes, more than the {MAX_ANNOTATIONS:,} allowed")
    return annotations


Labels = Annotated[dict[str, str], AfterValidator(check_labels)]
Annotations = Annotated[dict[str, str], AfterValidator(check_annotations)]


def iana_name(value: str) -> str:
    """A port name (IANA_SVC_NAME): 1-15 lowercase alphanumerics or '-', with a letter, no '--', no '-' at
    either end."""
    if len(value) > 15 or not IANA_SVC_NAME.match(value) or "--" in value or not re.search("[a-z]", value):
        raise ValueError(f"{show(value)} is not an IANA service name (1-15 lowercase alphanumerics or '-', "
                         "with a letter)")
    return value


def port_or_name(value: int | str) -> int | str:
    """A port as Kubernetes takes it in targetPort, policy and probe ports: a number, or an IANA service
    name (digits in a string are a number)."""
    if isinstance(value, int) and not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (1-65535)")
    if isinstance(value, str):
        if value.isdigit():
            return port_or_name(int(value))
        try:
            iana_name(value)
        except ValueError:
            raise ValueError(f"{show(value, 40)} is neither a port number nor a port name (an IANA service "
                             "name)") from None
    return value


def unicast_ip(value: IPv4Address | IPv6Address | str) -> str:
    """What ValidateNonSpecialIP refuses for an externalIP or an endpoint: unspecified, loopback, link-local
    and link-local multicast addresses."""
    ip = ip_address(value)
    if ip.version == 4:
        link_multicast = ip in IPv4Network("224.0.0.0/24")
    else:
        link_multicast = ip.packed[0] == 0xFF and ip.packed[1] & 0x0F == 0x02  # ffx2::, as Go's net.IP
    for bad, what in ((ip.is_unspecified, "unspecified"), (ip.is_loopback, "in the loopback range"),
                      (ip.is_link_local, "in the link-local range"),
                      (link_multicast, "in the link-local multicast range")):
        if bad:
            raise ValueError(f"{ip} may not be {what}")
    return str(ip)


def host_name(value: str, wildcard: bool = True) -> str:
    """An Ingress rule's host or a Gateway API hostname: a DNS-1123 subdomain, never an IP address, with no
    port; `*.` may lead it (a wildcard stands for exactly one label) and appear nowhere else."""
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} must be a string")
    if ":" in value:
        raise ValueError(f"{show(value)} must be a host name without a port")
    try:
        ip_address(value)
        raise ValueError(f"{show(value)} must be a DNS name, not an IP address")
    except ValueError as err:
        if "DNS name" in str(err):
            raise
    rest = value[2:] if wildcard and value.startswith("*.") else value
    if "*" in rest:
        raise ValueError(f"{show(value)}: a wildcard may only be the first label ('*.example.com')")
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(rest):
        raise ValueError(f"{show(value)} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')")
    return value


def http_path(value: str) -> str:
    """An Exact or Prefix path, as ValidateIngressSpec and the Gateway API's rules have it: absolute, and none
    of the sequences a proxy would normalise differently from the backend."""
    if not value.startswith("/"):
        raise ValueError(f"{show(value)} must be an absolute path (start with '/')")
    for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
        if bad in value:
            raise ValueError(f"{show(value)} must not contain {bad!r}")
    for bad in ("/..", "/."):
        if value.endswith(bad):
            raise ValueError(f"{show(value)} must not end with {bad!r}")
    return value


def domain_path(value: str, what: str = "controller") -> str:
    """An IngressClass controller or a GatewayClass controllerName: a domain prefix, then a path
    (`example.net/gateway-controller`), at most 253 characters."""
    prefix, slash, path = value.partition("/")
    if not slash or not path or len(value) > 253 or not DNS1123_SUBDOMAIN.match(prefix) \
            or not re.match(r"^[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$", path):
        raise ValueError(f"{what} {show(value)} must be a domain-prefixed path, e.g. testbed.dev/gateway")
    return value


QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([kMGTPE]i?|m)?$")
SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
BANDWIDTH_ANNOTATIONS = ("kubernetes.io/ingress-bandwidth", "kubernetes.io/egress-bandwidth")


def bandwidth(annotations: dict[str, str]) -> dict[str, int]:
    """A pod's bandwidth annotations as the kubelet reads them (bits per second, a resource quantity between
    1k and 1P) into the CNI `bandwidth` capability. containerd asks for an unbounded burst, which lets a flow of
    a few seconds pass at line rate; testbed asks for 100 ms of the rate, so the limit is what one measures."""
    out: dict[str, int] = {}
    for key, side in zip(BANDWIDTH_ANNOTATIONS, ("ingress", "egress"), strict=True):
        if key not in annotations:
            continue
        match = QUANTITY.match(annotations[key].strip())
        if not match:
            raise At(("annotations", key), f"{show(annotations[key])} is not a quantity (e.g. 10M)")
        rate = int(float(match.group(1)) * SUFFIX[match.group(2) or ""])
        if not 1000 <= rate <= 10**15:
            raise At(("annotations", key), f"{annotations[key]} is outside 1k-1P bits per second")
        out |= {f"{side}Rate": rate, f"{side}Burst": max(rate // 10, 131072)}
    return out
