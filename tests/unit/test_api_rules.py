"""The API server's validation, rule by rule, for every kind testbed accepts: each rule below is cited from
upstream (k8s.io/kubernetes pkg/apis/core/validation, apps/validation, discovery/validation and
networking/validation, and apimachinery's util/validation), given one manifest that breaks it, and must be
refused naming the file, the line, the field and the reason. OUT_OF_SCOPE lists the rules left out, and why;
VALID lists manifests the API server takes, which must load."""


import pytest
from apirules import edit, load, refused

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
          "spec": {"selector": {"matchLabels": {"app": "d"}},
                   "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c"}]}}}}
SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "e", "labels": {"kubernetes.io/service-name": "s"}}, "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"port": 80}]}
NETPOL = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n"},
          "spec": {"podSelector": {}}}
NS = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}




# (rule as upstream names it, manifest, field path, reason)
RULES = [
    # ObjectMeta (ValidateObjectMeta) and names
    ("Service name: ValidateServiceName = NameIsDNS1035Label", edit(SVC, "metadata.name", "1web"),
     "metadata.name", "not a DNS-1035 label"),
    ("Pod name: ValidatePodName = NameIsDNSSubdomain", edit(POD, "metadata.name", "Web_1"),
     "metadata.name", "not a DNS-1123 subdomain"),
    ("Namespace name: ValidateNamespaceName (DNS-1123 label)", edit(NS, "metadata.name", "a.b"),
     "metadata.name", "not a DNS-1123 label"),
    ("ObjectMeta.namespace: not allowed on a cluster-scoped kind", edit(NS, "metadata.namespace", "x"),
     "metadata.namespace", "not allowed on this type"),
    ("ObjectMeta.namespace: ValidateNamespaceName", edit(POD, "metadata.namespace", "Team"),
     "metadata.namespace", "not a DNS-1123 label"),
    ("ObjectMeta.labels: ValidateLabels (qualified name keys)", edit(POD, "metadata.labels", {"a/b/c": "x"}),
     "metadata.labels", "prefix must be a DNS-1123 subdomain"),
    ("ObjectMeta.labels: IsValidLabelValue", edit(POD, "metadata.labels", {"app": "-x"}),
     "metadata.labels", "must be empty or 1-63 alphanumerics"),
    ("ObjectMeta.annotations: ValidateAnnotations (qualified name keys)",
     edit(POD, "metadata.annotations", {"bad key": "x"}), "metadata.annotations", "annotation key 'bad key'"),
    ("ObjectMeta.annotations: TotalAnnotationSizeLimitB (256 KiB)",
     edit(POD, "metadata.annotations", {"big": "x" * 262_200}), "metadata.annotations", "more than the 262,144"),
    # Pod (ValidatePodSpec)
    ("PodSpec.containers: Required", edit(POD, "spec.containers", []), "spec.containers", "at least 1"),
    ("Container.name: ValidateDNS1123Label", edit(POD, "spec.containers.0.name", "C1"),
     "spec.containers[0].name", "not a DNS-1123 label"),
    ("Container.name: Duplicate (unique across containers)",
     edit(POD, "spec.containers", [{"name": "c"}, {"name": "c"}]), "spec.containers[1].name", "Duplicate value"),
    ("ContainerPort.containerPort: IsValidPortNum", edit(POD, "spec.containers.0.ports", [{"containerPort": 0}]),
     "spec.containers[0].ports[0].containerPort", "greater than or equal to 1"),
    ("ContainerPort.hostPort: IsValidPortNum", edit(POD, "spec.containers.0.ports",
                                                   [{"containerPort": 80, "hostPort": 70000}]),
     "spec.containers[0].ports[0].hostPort", "less than or equal to 65535"),
    ("ContainerPort.name: IsValidPortName (IANA_SVC_NAME)",
     edit(POD, "spec.containers.0.ports", [{"containerPort": 80, "name": "http--x"}]),
     "spec.containers[0].ports[0].name", "not an IANA service name"),
    ("ContainerPort.name: Duplicate across the pod", edit(POD, "spec.containers", [
        {"name": "a", "ports": [{"containerPort": 80, "name": "web"}]},
        {"name": "b", "ports": [{"containerPort": 81, "name": "web"}]}]),
     "spec.containers[1].ports[0].name", "declared twice"),
    ("ContainerPort.protocol: supportedPortProtocols", edit(POD, "spec.containers.0.ports",
                                                          [{"containerPort": 80, "protocol": "ICMP"}]),
     "spec.containers[0].ports[0].protocol", "'TCP', 'UDP' or 'SCTP'"),
    ("PodSpec.restartPolicy: supported values", edit(POD, "spec.restartPolicy", "Sometimes"),
     "spec.restartPolicy", "'Always', 'OnFailure' or 'Never'"),
    ("PodSpec.dnsPolicy: supported values", edit(POD, "spec.dnsPolicy", "Cluster"), "spec.dnsPolicy",
     "'ClusterFirst'"),
    ("PodSpec.dnsConfig: nameservers required with dnsPolicy None", edit(POD, "spec.dnsPolicy", "None"),
     "spec.dnsConfig", "at least one nameserver"),
    ("PodDNSConfig.nameservers: at most 3 (MaxDNSNameservers)",
     edit(POD, "spec.dnsConfig", {"nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4"]}),
     "spec.dnsConfig.nameservers", "at most 3"),
    ("PodDNSConfig.nameservers: IsValidIP", edit(POD, "spec.dnsConfig", {"nameservers": ["dns.local"]}),
     "spec.dnsConfig.nameservers[0]", "IPv4 or IPv6"),
    ("PodDNSConfig.searches: ValidateDNS1123Subdomain", edit(POD, "spec.dnsConfig", {"searches": ["a_b.local"]}),
     "spec.dnsConfig.searches[0]", "not a DNS-1123 subdomain"),
    ("PodDNSConfig.searches: at most 2048 characters (MaxDNSSearchListChars)",
     edit(POD, "spec.dnsConfig", {"searches": ["a" * 63 + ".x"] * 32}), "spec.dnsConfig.searches", "2048"),
    ("PodDNSConfig.options: name Required", edit(POD, "spec.dnsConfig", {"options": [{"name": ""}]}),
     "spec.dnsConfig.options[0].name", "at least 1 character"),
    ("PodSpec.hostname: ValidateDNS1123Label", edit(POD, "spec.hostname", "web.1"), "spec.hostname",
     "not a DNS-1123 label"),
    ("PodSpec.subdomain: ValidateDNS1123Label", edit(POD, "spec.subdomain", "Web"), "spec.subdomain",
     "not a DNS-1123 label"),
    ("PodSpec.nodeSelector: ValidateLabels", edit(POD, "spec.nodeSelector", {"zone": "a b"}),
     "spec.nodeSelector", "must be empty or 1-63 alphanumerics"),
    ("PodSpec.nodeName: ValidateNodeName (DNS-1123 subdomain)", edit(POD, "spec.nodeName", "Node_1"),
     "spec.nodeName", "not a DNS-1123 subdomain"),
    ("PodSpec.terminationGracePeriodSeconds: ValidateNonnegativeField",
     edit(POD, "spec.terminationGracePeriodSeconds", -1), "spec.terminationGracePeriodSeconds",
     "greater than or equal to 0"),
    ("PodSpec.activeDeadlineSeconds: must be positive", edit(POD, "spec.activeDeadlineSeconds", 0),
     "spec.activeDeadlineSeconds", "greater than or equal to 1"),
    ("Probe: exactly one handler (validateHandler)", edit(POD, "spec.containers.0.readinessProbe", {}),
     "spec.containers[0].readinessProbe", "exactly one of exec, tcpSocket or httpGet"),
    ("Probe.periodSeconds: must be positive", edit(POD, "spec.containers.0.readinessProbe",
                                                  {"exec": {"command": ["true"]}, "periodSeconds": 0}),
     "spec.containers[0].readinessProbe.periodSeconds", "greater than or equal to 1"),
    ("Probe.successThreshold: must be 1 for liveness (validateLivenessProbe)",
     edit(POD, "spec.containers.0.livenessProbe", {"exec": {"command": ["true"]}, "successThreshold": 2}),
     "spec.containers[0].livenessProbe.successThreshold", "must be 1"),
    ("Probe.successThreshold: must be 1 for startup (validateStartupProbe)",
     edit(POD, "spec.containers.0.startupProbe", {"tcpSocket": {"port": 80}, "successThreshold": 3}),
     "spec.containers[0].startupProbe.successThreshold", "must be 1"),
    ("Probe port: ValidatePortNumOrName", edit(POD, "spec.containers.0.readinessProbe",
                                              {"tcpSocket": {"port": 0}}),
     "spec.containers[0].readinessProbe.tcpSocket.port", "not a port number"),
    ("HTTPGetAction.scheme: HTTP or HTTPS", edit(POD, "spec.containers.0.readinessProbe",
                                                {"httpGet": {"port": 80, "scheme": "FTP"}}),
     "spec.containers[0].readinessProbe.httpGet.scheme", "'HTTP' or 'HTTPS'"),
    # Deployment (ValidateDeploymentSpec)
    ("DeploymentSpec.replicas: ValidateNonnegativeField", edit(DEPLOY, "spec.replicas", -1), "spec.replicas",
     "greater than or equal to 0"),
    ("DeploymentSpec.selector: must not be empty", edit(DEPLOY, "spec.selector", {}), "spec.selector",
     "must not be empty"),
    ("DeploymentSpec.selector: must match template labels", edit(DEPLOY, "spec.template.metadata.labels",
                                                                {"app": "other"}),
     "spec.template.metadata.labels", "`selector` does not match template `labels`"),
    ("LabelSelector: ValidateLabelSelectorRequirement (values with In)",
     edit(DEPLOY, "spec.selector", {"matchExpressions": [{"key": "app", "operator": "In"}]}),
     "spec.selector.matchExpressions[0]", "values: must be non-empty"),
    ("LabelSelector: label values in matchExpressions", edit(DEPLOY, "spec.selector", {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["d", "not valid"]}]}),
     "spec.selector.matchExpressions[0]", "must be empty or 1-63 alphanumerics"),
    ("LabelSelector: qualified key", edit(DEPLOY, "spec.selector", {
        "matchExpressions": [{"key": "-app", "operator": "Exists"}]}),
     "spec.selector.matchExpressions[0].key", "name must be 1-63 alphanumerics"),
    ("PodTemplateSpec.restartPolicy: only Always in a Deployment",
     edit(DEPLOY, "spec.template.spec.restartPolicy", "Never"), "spec.template.spec.restartPolicy",
     "only 'Always'"),
    ("DeploymentStrategy.type: Recreate or RollingUpdate", edit(DEPLOY, "spec.strategy", {"type": "Canary"}),
     "spec.strategy.type", "'RollingUpdate' or 'Recreate'"),
    ("DeploymentStrategy: rollingUpdate forbidden with Recreate",
     edit(DEPLOY, "spec.strategy", {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
     "spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'"),
    ("RollingUpdateDeployment: maxUnavailable and maxSurge not both 0",
     edit(DEPLOY, "spec.strategy", {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
     "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0"),
    ("RollingUpdateDeployment: IsValidPercent", edit(DEPLOY, "spec.strategy", {"rollingUpdate": {"maxSurge": "x"}}),
     "spec.strategy.rollingUpdate.maxSurge", "integer or a percentage"),
    ("DeploymentSpec.minReadySeconds: ValidateNonnegativeField", edit(DEPLOY, "spec.minReadySeconds", -1),
     "spec.minReadySeconds", "greater than or equal to 0"),
    ("DeploymentSpec.progressDeadlineSeconds: greater than minReadySeconds",
     edit(edit(DEPLOY, "spec.minReadySeconds", 10), "spec.progressDeadlineSeconds", 10),
     "spec.progressDeadlineSeconds", "greater than minReadySeconds"),
    ("DeploymentSpec.revisionHistoryLimit: ValidateNonnegativeField", edit(DEPLOY, "spec.revisionHistoryLimit", -2),
     "spec.revisionHistoryLimit", "greater than or equal to 0"),
    # Service (ValidateService)
    ("ServiceSpec.ports: Required (unless headless or ExternalName)", edit(SVC, "spec.ports", []), "spec.ports",
     "Required value"),
    ("ServicePort.name: ValidateDNS1123Label", edit(SVC, "spec.ports.0.name", "Web"), "spec.ports[0].name",
     "not a DNS-1123 label"),
    ("ServicePort.name: Required when several ports", edit(SVC, "spec.ports", [{"port": 80}, {"port": 81}]),
     "spec.ports[0].name", "every port needs a name"),
    ("ServicePort.name: Duplicate", edit(SVC, "spec.ports", [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
     "spec.ports[1].name", "Duplicate value"),
    ("ServicePort.port: IsValidPortNum", edit(SVC, "spec.ports.0.port", 65536), "spec.ports[0].port",
     "less than or equal to 65535"),
    ("ServicePort.targetPort: ValidatePortNumOrName", edit(SVC, "spec.ports.0.targetPort", "http-"),
     "spec.ports[0].targetPort", "neither a port number nor a port name"),
    ("ServicePort.appProtocol: ValidateQualifiedName", edit(SVC, "spec.ports.0.appProtocol", "a b"),
     "spec.ports[0].appProtocol", "name must be 1-63 alphanumerics"),
    ("Service ports: Duplicate (port, protocol)", edit(SVC, "spec.ports", [{"port": 80, "name": "a"},
                                                                          {"port": 80, "name": "b"}]),
     "spec.ports[1]", "declared twice"),
    ("ServicePort.nodePort: forbidden with type ClusterIP", edit(SVC, "spec.ports.0.nodePort", 30001),
     "spec.ports[0].nodePort", "may not be used when `type` is 'ClusterIP'"),
    ("ServicePort.nodePort: Duplicate (nodePort, protocol)", edit(edit(SVC, "spec.type", "NodePort"), "spec.ports", [
        {"port": 80, "name": "a", "nodePort": 30001}, {"port": 81, "name": "b", "nodePort": 30001}]),
     "spec.ports[1].nodePort", "Duplicate value: 30001"),
    ("ServiceSpec.selector: ValidateLabels", edit(SVC, "spec.selector", {"app": "a b"}), "spec.selector",
     "must be empty or 1-63 alphanumerics"),
    ("ServiceSpec.sessionAffinity: supported values", edit(SVC, "spec.sessionAffinity", "Cookie"),
     "spec.sessionAffinity", "'None' or 'ClientIP'"),
    ("ServiceSpec.sessionAffinityConfig: forbidden when sessionAffinity is None",
     edit(SVC, "spec.sessionAffinityConfig", {"clientIP": {"timeoutSeconds": 60}}), "spec.sessionAffinityConfig",
     "must not be set when session affinity is None"),
    ("ClientIPConfig.timeoutSeconds: 1-86400 (validateClientIPAffinityConfig)",
     edit(edit(SVC, "spec.sessionAffinity", "ClientIP"), "spec.sessionAffinityConfig",
          {"clientIP": {"timeoutSeconds": 86401}}),
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "less than or equal to 86400"),
    ("ServiceSpec.clusterIP: IsValidIP", edit(SVC, "spec.clusterIP", "10.96.0.300"), "spec.clusterIP",
     "neither an IP address nor None"),
    ("ServiceSpec.clusterIPs: first value must match clusterIP",
     edit(edit(SVC, "spec.clusterIP", "10.96.0.20"), "spec.clusterIPs", ["10.96.0.21"]), "spec.clusterIPs",
     "first value must match `clusterIP`"),
    ("ServiceSpec.clusterIPs: one IP per family", edit(SVC, "spec.clusterIPs", ["10.96.0.20", "10.96.0.21"]),
     "spec.clusterIPs", "no more than one IP for each IP family"),
    ("ServiceSpec.clusterIPs: None first and only", edit(SVC, "spec.clusterIPs", ["None", "10.96.0.21"]),
     "spec.clusterIPs", "'None' must be the first and only value"),
    ("ServiceSpec.clusterIPs: match ipFamilies", edit(edit(SVC, "spec.clusterIPs", ["10.96.0.20"]),
                                                      "spec.ipFamilies", ["IPv6"]),
     "spec.clusterIPs[0]", "expected an IPv6 value as indicated by `ipFamilies[0]`"),
    ("ServiceSpec.ipFamilies: Duplicate", edit(SVC, "spec.ipFamilies", ["IPv4", "IPv4"]), "spec.ipFamilies",
     "Duplicate value"),
    ("ServiceSpec.ipFamilyPolicy: supported values", edit(SVC, "spec.ipFamilyPolicy", "DualStack"),
     "spec.ipFamilyPolicy", "'SingleStack', 'PreferDualStack' or 'RequireDualStack'"),
    ("ServiceSpec.externalIPs: IsValidIP", edit(SVC, "spec.externalIPs", ["1.2.3"]), "spec.externalIPs[0]",
     "IPv4 or IPv6"),
    ("ServiceSpec.externalIPs: ValidateNonSpecialIP", edit(SVC, "spec.externalIPs", ["127.0.0.1"]),
     "spec.externalIPs[0]", "may not be in the loopback range"),
    ("ServiceSpec.type: supported values", edit(SVC, "spec.type", "Ingress"), "spec.type", "'ClusterIP'"),
    ("ServiceSpec.type ExternalName: clusterIP forbidden",
     edit(edit(SVC, "spec.type", "ExternalName"), "spec", {"type": "ExternalName", "externalName": "a.example",
                                                           "clusterIP": "10.96.0.30"}),
     "spec.clusterIP", "may not be set for ExternalName services"),
    ("ServiceSpec.type ExternalName: ipFamilies forbidden",
     edit(SVC, "spec", {"type": "ExternalName", "externalName": "a.example", "ipFamilies": ["IPv4"]}),
     "spec.ipFamilies", "may not be set for ExternalName services"),
    ("ServiceSpec.type ExternalName: ipFamilyPolicy forbidden",
     edit(SVC, "spec", {"type": "ExternalName", "externalName": "a.example", "ipFamilyPolicy": "SingleStack"}),
     "spec.ipFamilyPolicy", "may not be set for ExternalName services"),
    ("ServiceSpec.externalName: Required for ExternalName", edit(SVC, "spec", {"type": "ExternalName"}),
     "spec.externalName", "Required value"),
    ("ServiceSpec.externalName: ValidateDNS1123Subdomain", edit(SVC, "spec", {"type": "ExternalName",
                                                                             "externalName": "a_b.example"}),
     "spec.externalName", "not a DNS-1123 subdomain"),
    ("ServiceSpec.clusterIP None: not for NodePort/LoadBalancer",
     edit(edit(SVC, "spec.type", "NodePort"), "spec.clusterIP", "None"), "spec.clusterIP",
     "may not be set to 'None' for NodePort services"),
    ("ServiceSpec.loadBalancerSourceRanges: only with LoadBalancer",
     edit(SVC, "spec.loadBalancerSourceRanges", ["10.0.0.0/8"]), "spec.loadBalancerSourceRanges",
     "may only be used when `type` is 'LoadBalancer'"),
    ("ServiceSpec.loadBalancerSourceRanges: IsValidCIDR",
     edit(edit(SVC, "spec.type", "LoadBalancer"), "spec.loadBalancerSourceRanges", ["10.0.0.0/33"]),
     "spec.loadBalancerSourceRanges[0]", "not a CIDR"),
    ("ServiceSpec.allocateLoadBalancerNodePorts: only with LoadBalancer",
     edit(SVC, "spec.allocateLoadBalancerNodePorts", False), "spec.allocateLoadBalancerNodePorts",
     "may only be used when `type` is 'LoadBalancer'"),
    ("ServiceSpec.loadBalancerClass: only with LoadBalancer", edit(SVC, "spec.loadBalancerClass", "example.com/lb"),
     "spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"),
    ("ServiceSpec.externalTrafficPolicy: only for externally-accessible services",
     edit(SVC, "spec.externalTrafficPolicy", "Cluster"), "spec.externalTrafficPolicy",
     "may only be set for externally-accessible services"),
    ("ServiceSpec.externalTrafficPolicy: supported values",
     edit(edit(SVC, "spec.type", "NodePort"), "spec.externalTrafficPolicy", "Node"), "spec.externalTrafficPolicy",
     "'Cluster' or 'Local'"),
    ("ServiceSpec.healthCheckNodePort: only LoadBalancer with Local",
     edit(edit(SVC, "spec.type", "NodePort"), "spec.healthCheckNodePort", 30500), "spec.healthCheckNodePort",
     "may only be set when `type` is 'LoadBalancer'"),
    ("ServiceSpec.internalTrafficPolicy: supported values", edit(SVC, "spec.internalTrafficPolicy", "Node"),
     "spec.internalTrafficPolicy", "'Cluster' or 'Local'"),
    ("ServiceSpec.trafficDistribution: supported values", edit(SVC, "spec.trafficDistribution", "Nearby"),
     "spec.trafficDistribution", "'PreferClose', 'PreferSameZone' or 'PreferSameNode'"),
    # EndpointSlice (ValidateEndpointSlice)
    ("EndpointSlice.addressType: supported values", edit(SLICE, "addressType", "IPX"), "addressType",
     "'IPv4' or 'IPv6'"),
    ("Endpoint.addresses: at least 1", edit(SLICE, "endpoints.0.addresses", []), "endpoints[0].addresses",
     "at least 1"),
    ("Endpoint.addresses: valid for addressType", edit(SLICE, "endpoints.0.addresses", ["fd00::1"]),
     "endpoints[0].addresses[0]", "not an IPv4 address"),
    ("Endpoint.addresses: ValidateEndpointIP (no special IPs)", edit(SLICE, "endpoints.0.addresses", ["169.254.1.1"]),
     "endpoints[0].addresses[0]", "link-local"),
    ("Endpoint.hostname: ValidateDNS1123Label", edit(SLICE, "endpoints.0.hostname", "a.b"), "endpoints[0].hostname",
     "not a DNS-1123 label"),
    ("Endpoint.nodeName: ValidateNodeName", edit(SLICE, "endpoints.0.nodeName", "N_1"), "endpoints[0].nodeName",
     "not a DNS-1123 subdomain"),
    ("EndpointPort.name: ValidateDNS1123Label", edit(SLICE, "ports.0.name", "Web"), "ports[0].name",
     "not a DNS-1123 label"),
    ("EndpointPort.name: Duplicate", edit(SLICE, "ports", [{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
     "ports[1].name", "Duplicate value"),
    ("EndpointPort.protocol: supported values", edit(SLICE, "ports.0.protocol", "ICMP"), "ports[0].protocol",
     "'TCP', 'UDP' or 'SCTP'"),
    # NetworkPolicy (ValidateNetworkPolicySpec)
    ("NetworkPolicyPeer: ipBlock exclusive with selectors", edit(NETPOL, "spec.ingress", [
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]), "spec.ingress[0].from[0]",
     "ipBlock cannot be combined"),
    ("NetworkPolicyPeer: one of the three required", edit(NETPOL, "spec.ingress", [{"from": [{}]}]),
     "spec.ingress[0].from[0]", "a peer needs"),
    ("IPBlock.cidr: IsValidCIDR", edit(NETPOL, "spec.egress", [{"to": [{"ipBlock": {"cidr": "10.0.0.0/40"}}]}]),
     "spec.egress[0].to[0].ipBlock.cidr", "not a CIDR"),
    ("IPBlock.except: strict subset (equal)", edit(NETPOL, "spec.egress", [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]),
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset of `cidr` 10.0.0.0/8: it is equal to it"),
    ("IPBlock.except: strict subset (outside)", edit(NETPOL, "spec.egress", [
        {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}]),
     "spec.egress[0].to[0].ipBlock.except[0]", "it is outside it"),
    ("NetworkPolicyPort.protocol: supported values", edit(NETPOL, "spec.ingress", [{"ports": [{"protocol": "GRE"}]}]),
     "spec.ingress[0].ports[0].protocol", "'TCP', 'UDP' or 'SCTP'"),
    ("NetworkPolicyPort.endPort: needs port", edit(NETPOL, "spec.ingress", [{"ports": [{"endPort": 90}]}]),
     "spec.ingress[0].ports[0]", "endPort: needs port"),
    ("NetworkPolicyPort.endPort: not with a named port", edit(NETPOL, "spec.ingress", [
        {"ports": [{"port": "http", "endPort": 90}]}]), "spec.ingress[0].ports[0]", "named port"),
    ("NetworkPolicyPort.endPort: at least port", edit(NETPOL, "spec.ingress", [
        {"ports": [{"port": 90, "endPort": 80}]}]), "spec.ingress[0].ports[0]", "must be between port"),
    ("NetworkPolicySpec.policyTypes: supported values", edit(NETPOL, "spec.policyTypes", ["Both"]),
     "spec.policyTypes[0]", "'Ingress' or 'Egress'"),
    ("NetworkPolicySpec.podSelector: ValidateLabelSelector", edit(NETPOL, "spec.podSelector",
                                                                 {"matchLabels": {"a": "b c"}}),
     "spec.podSelector.matchLabels", "must be empty or 1-63 alphanumerics"),
]

OUT_OF_SCOPE = {
    "Container.image: Required": "testbed runs no image (pods run netexec answers or a command from the node "
                                 "image), so short manifests may leave it out; real ones are accepted as they are",
    "ContainerPort: duplicate (containerPort, protocol) is only a warning upstream":
        "refused here: two listeners on one port cannot both be opened in the pod",
    "hostNetwork, volumes, resources, securityContext, affinity, tolerations, initContainers":
        "accepted and ignored (hostNetwork: true is refused: every pod has its own netns), as the README says",
    "Pod/Deployment/Service updates (ValidateXxxUpdate: immutable fields)":
        "testbed replaces objects on apply, as `kubectl replace --force` would; nothing is immutable here",
    "ObjectMeta: generateName, ownerReferences, finalizers, managedFields":
        "testbed needs names to find objects again; the rest is the API server's bookkeeping",
    "EndpointSlice addressType FQDN": "deprecated upstream; refused with a clear reason",
    "EndpointSlice labels: kubernetes.io/service-name": "not required upstream, required here: it is how a "
                                                        "selector-less Service finds its slices",
    "ServiceSpec.externalName on other types": "upstream drops it; refused here as the mistake it usually is",
    "Namespace spec.finalizers, Node objects, ReplicaSets, StatefulSets, Jobs":
        "kinds testbed does not take yet are refused by kind (the edge kinds have their rules in "
        "test_api_rules_edge.py)",
}

VALID = [  # what the API server takes, and testbed must too
    edit(SVC, "spec", {"type": "ExternalName", "externalName": "db.example.com", "selector": {"app": "x"}}),
    edit(SVC, "spec", {"type": "ClusterIP", "externalIPs": ["192.0.2.9"], "externalTrafficPolicy": "Local",
                       "ports": [{"port": 80}]}),
    edit(SVC, "spec", {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30999,
                       "loadBalancerSourceRanges": [" 10.0.0.0/8"], "ports": [{"port": 80, "appProtocol": "http"}]}),
    edit(SVC, "spec", {"clusterIP": "None"}),
    edit(SVC, "spec", {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"],
                       "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                       "ports": [{"port": 80}]}),
    edit(POD, "spec.containers.0.readinessProbe", {"httpGet": {"port": 443, "scheme": "HTTPS"}}),
    edit(POD, "spec.restartPolicy", "Never"),
    edit(DEPLOY, "spec.strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%",
                                                                               "maxUnavailable": 0}}),
    edit(NETPOL, "spec.ingress", [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]),
]




@pytest.mark.parametrize(("rule", "doc", "field", "reason"), RULES, ids=[r[0] for r in RULES])
def test_the_api_server_refuses_it_and_so_does_testbed(tmp_path, rule, doc, field, reason):
    refused(tmp_path, doc, field, reason)


@pytest.mark.parametrize("doc", VALID, ids=range(len(VALID)))
def test_what_the_api_server_takes_loads(tmp_path, doc):
    assert len(load(tmp_path, doc)) == 1


def test_every_rule_is_cited_once_and_the_left_out_ones_say_why():
    assert len({r[0] for r in RULES}) == len(RULES)
    assert all(why for why in OUT_OF_SCOPE.values())
