"""The Kubernetes objects testbed understands, by kind: the fields it acts on are checked the way the API server
checks them (pod.py, service.py, networkpolicy.py and the shared meta.py and names.py); other fields of real
manifests (images, resources, volumes...) are accepted and ignored. tests/unit/test_api_rules.py lists which of
the API server's rules are enforced, and which are left out and why."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from testbed.model.gateway import Gateway, GatewayClass, HTTPRoute, ReferenceGrant
from testbed.model.ingress import Ingress, IngressClass
from testbed.model.meta import LabelSelector, Loose, ObjectMeta
from testbed.model.names import At, at, dns_label
from testbed.model.networkpolicy import NetworkPolicy
from testbed.model.pod import Deployment, Pod, PodSpec, PodTemplate
from testbed.model.secret import Secret
from testbed.model.service import NODE_PORTS, SERVICE_NAME_LABEL, EndpointSlice, Service, ServiceSpec

__all__ = ["CLUSTER_SCOPED", "KINDS", "NODE_PORTS", "SERVICE_NAME_LABEL", "Deployment", "EndpointSlice", "Gateway",
           "GatewayClass", "HTTPRoute", "Ingress", "IngressClass", "LabelSelector", "Namespace", "NetworkPolicy",
           "Object", "Pod", "PodSpec", "PodTemplate", "ReferenceGrant", "Secret", "Service", "ServiceSpec", "key"]

METADATA_NAME_LABEL = "kubernetes.io/metadata.name"
BUILTIN_NAMESPACES = ("default", "kube-system")


class Namespace(Loose):
    apiVersion: Literal["v1"]
    kind: Literal["Namespace"]
    metadata: ObjectMeta

    @field_validator("metadata")
    @classmethod
    def _label_name(cls, meta: ObjectMeta) -> ObjectMeta:
        at(("name",), dns_label, meta.name)
        if meta.namespace is not None:
            raise At(("namespace",), "not allowed on this type: a Namespace is not in a namespace")
        meta.labels = {**meta.labels, METADATA_NAME_LABEL: meta.name}  # as the API server does
        return meta


Object = (Namespace | Pod | Deployment | Service | EndpointSlice | NetworkPolicy | Secret | Ingress | IngressClass
          | GatewayClass | Gateway | HTTPRoute | ReferenceGrant)
KINDS: dict[str, type[Object]] = {"Namespace": Namespace, "Pod": Pod, "Deployment": Deployment, "Service": Service,
                                  "EndpointSlice": EndpointSlice, "NetworkPolicy": NetworkPolicy, "Secret": Secret,
                                  "Ingress": Ingress, "IngressClass": IngressClass, "GatewayClass": GatewayClass,
                                  "Gateway": Gateway, "HTTPRoute": HTTPRoute, "ReferenceGrant": ReferenceGrant}
CLUSTER_SCOPED = (Namespace, IngressClass, GatewayClass)


def key(obj: Object) -> str:
    """kind/namespace/name, the identity `apply` and `delete` work by."""
    ns = "" if isinstance(obj, CLUSTER_SCOPED) else (obj.metadata.namespace or "default")
    return f"{obj.kind}/{ns}/{obj.metadata.name}"
