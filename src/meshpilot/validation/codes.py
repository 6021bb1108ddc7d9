"""Stable diagnostic codes. Documented in docs/diagnostics.md; never renumber.

Codes MP0xxx are about a single document; MP1xxx about how documents relate (judged on
the state after the whole apply); MP2xxx are warnings. Where Istio's ``istioctl
analyze`` has the same check, its code is given so users can map one to the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str
    istio: str = ""


PARSE = Code("MP0001", Severity.ERROR, "YAML or JSON does not parse")
NOT_AN_OBJECT = Code("MP0002", Severity.ERROR, "document is not an object")
MISSING_TYPE = Code("MP0003", Severity.ERROR, "apiVersion or kind missing")
UNKNOWN_TYPE = Code("MP0004", Severity.ERROR, "unknown kind or apiVersion")
UNKNOWN_FIELD = Code("MP0010", Severity.ERROR, "unknown field")
MISSING_FIELD = Code("MP0011", Severity.ERROR, "required field missing")
WRONG_TYPE = Code("MP0012", Severity.ERROR, "wrong type")
OUT_OF_RANGE = Code("MP0013", Severity.ERROR, "value out of range")
BAD_DURATION = Code("MP0014", Severity.ERROR, "duration does not parse")
BAD_REGEX = Code("MP0015", Severity.ERROR, "regex not accepted by Envoy's RE2")
ZERO_WEIGHTS = Code("MP0016", Severity.ERROR, "route weights all zero")
INVALID_VALUE = Code("MP0017", Severity.ERROR, "invalid value")
DUPLICATE_OBJECT = Code("MP0018", Severity.ERROR, "object given twice in one apply")
CONFLICT = Code("MP0020", Severity.ERROR, "stale resourceVersion (conflict)")
NOT_FOUND = Code("MP0021", Severity.ERROR, "object not found")
BAD_TLS_SECRET = Code("MP0030", Severity.ERROR, "TLS Secret: certificate or key does not "
                      "parse, or they are not one pair")
BAD_WILDCARD = Code("MP0031", Severity.ERROR, "'*' other than as a whole value, prefix or "
                    "suffix")
PATH_TEMPLATE = Code("MP0032", Severity.ERROR, "path template ({*}, {**}) not supported")
BAD_IP = Code("MP0033", Severity.ERROR, "not an IP address or CIDR block")
UNKNOWN_CONDITION = Code("MP0034", Severity.ERROR, "unknown AuthorizationPolicy condition key")
CUSTOM_ACTION = Code("MP0035", Severity.ERROR, "action CUSTOM: meshpilot has no ext_authz "
                     "provider")
TARGET_REF = Code("MP0036", Severity.ERROR, "targetRef/targetRefs: policies attach to "
                  "sidecars by selector only")
GATEWAY_MULTI_CLUSTER = Code("MP0037", Severity.ERROR, "Gateway TLS mode ISTIO_MUTUAL or "
                             "AUTO_PASSTHROUGH: meshpilot runs no multi-cluster gateway")
GATEWAY_TLS_UNSERVED = Code("MP0038", Severity.ERROR, "Gateway server TLS the gateway cannot "
                            "serve as written")
CA_FILES = Code("MP0039", Severity.ERROR, "CA directory unusable: a file missing or "
                "unreadable, a key not matching its certificate, a chain not reaching a root")
CA_STEP_OUT_OF_ORDER = Code("MP0040", Severity.ERROR, "CA rotation step out of order")
CA_NOT_TRUSTED = Code("MP0041", Severity.ERROR, "switch to a CA whose root is not in the "
                      "trust bundle")
CA_ROOT_NEEDED = Code("MP0042", Severity.ERROR, "no root to retire: the only roots left are "
                      "the issuing and pending CA's")
CA_ROOT_IN_USE = Code("MP0043", Severity.ERROR, "retiring a root that live workload "
                      "certificates still chain to")
CA_NOT_PROPAGATED = Code("MP0044", Severity.ERROR, "proxies have not all taken the previous "
                         "CA rotation step yet")
GATEWAY_PROTOCOL = Code("MP0045", Severity.ERROR, "Gateway server protocol the gateway does "
                        "not proxy (UDP)")
UNAPPLIED_SECURITY_FIELD = Code("MP0046", Severity.ERROR, "field meshpilot does not apply, "
                                "where ignoring it would weaken security")
BAD_VOLUME_MOUNT = Code("MP0047", Severity.ERROR, "volume mount or volume item path the "
                        "local runtime cannot make (unknown volume, path not allowed)")
NOT_IMPLEMENTED_FLAGGER_FIELD = Code("MP0048", Severity.ERROR, "Canary or MetricTemplate field "
                                     "or value meshpilot does not implement")
TESTER_TASK_TYPE = Code("MP0055", Severity.ERROR, "webhook to the built-in load tester with "
                        "a task type it does not run (helm, helmv3, kubectl, concord, "
                        "ngrinder, unknown)")
TESTER_NO_COMMAND = Code("MP0056", Severity.ERROR, "webhook to the built-in load tester's "
                         "task endpoint without metadata.cmd")
NOT_IMPLEMENTED_ARGO_FIELD = Code("MP0057", Severity.ERROR, "Argo Rollouts field, step, "
                                  "strategy or router meshpilot does not implement")
PROVIDER_ADDRESS = Code("MP0073", Severity.ERROR, "MetricTemplate graphite or influxdb "
                        "provider without an http(s) address")
PROVIDER_QUERY = Code("MP0074", Severity.ERROR, "MetricTemplate query its provider does not "
                      "run: influxdb other than an InfluxQL SELECT (Flux), graphite without "
                      "a target")
ARGO_METRIC_PROVIDER = Code("MP0075", Severity.ERROR, "Argo analysis metric provider "
                            "meshpilot does not run (it runs prometheus and web)")
ARGO_ANALYSIS_FIELD = Code("MP0076", Severity.ERROR, "Argo analysis field meshpilot does "
                           "not implement")
ARGO_CONDITION = Code("MP0077", Severity.ERROR, "Argo analysis successCondition or "
                      "failureCondition outside the supported expression forms")
ARGO_JSON_PATH = Code("MP0078", Severity.ERROR, "Argo web metric jsonPath outside the "
                      "supported forms ({$.a.b[0]})")
ENVOY_FILTER_NOT_APPLIED = Code("MP0086", Severity.ERROR, "EnvoyFilter applyTo, operation, "
                                "match field or option meshpilot does not apply")
ENVOY_FILTER_VALUE = Code("MP0087", Severity.ERROR, "EnvoyFilter patch value is not the Envoy "
                          "v3 message its applyTo takes")
ENVOY_FILTER_ENVOY_REFUSED = Code("MP0088", Severity.ERROR, "EnvoyFilter patches yield a "
                                  "config Envoy refuses (envoy --mode validate), or one that "
                                  "names what it removed")
ENVOY_FILTER_NO_WORKLOAD = Code("MP2057", Severity.WARNING, "EnvoyFilter workloadSelector "
                                "selects no workload (yet)")
ENVOY_FILTER_NO_MATCH = Code("MP2058", Severity.WARNING, "EnvoyFilter patch matches nothing "
                             "in the config of the proxies it selects")
MESH_CONFIG_FILE = Code("MP0079", Severity.ERROR, "mesh config file unreadable or not one "
                        "YAML object of meshConfig's fields")
MESH_CONFIG_FIELD = Code("MP0080", Severity.ERROR, "mesh config field unknown to Istio's "
                         "meshConfig and to meshpilot")
MESH_CONFIG_VALUE = Code("MP0081", Severity.ERROR, "mesh config value invalid "
                         "(outboundTrafficPolicy.mode, dnsResolvers)")
MESH_CONFIG_REFUSED = Code("MP0082", Severity.ERROR, "mesh config field refused: leaving it "
                           "out would send traffic past the control it asks for "
                           "(outboundTrafficPolicy.egressProxy)")
MESH_CONFIG_IGNORED = Code("MP2051", Severity.WARNING, "Istio meshConfig field that "
                           "meshpilot does not act on")
MESH_NETWORK_UNKNOWN = Code("MP0089", Severity.ERROR, "meshNetworks names a registry or a "
                             "gateway service meshpilot does not have (only Kubernetes, the "
                             "control-plane host's pods, and its east-west gateway)")
NETWORK_NOT_LISTED = Code("MP2032", Severity.WARNING, "WorkloadEntry or WorkloadGroup names "
                          "a network meshNetworks does not list: it is reached only from "
                          "proxies on that same network name, through no gateway")
LOCAL_NETWORK_REFUSED = Code("MP0095", Severity.ERROR, "up --network refused: not a "
                             "network name, or meshNetworks puts the control-plane host "
                             "(fromRegistry: Kubernetes) on another network")
LOCAL_NETWORK_NOT_LISTED = Code("MP2039", Severity.WARNING, "up --network names a network "
                                "meshNetworks does not list: it has no gateway, so proxies "
                                "on other networks do not reach this host's pods")
NETWORK_NO_GATEWAY = Code("MP2036", Severity.WARNING, "meshNetworks network without a "
                          "gateway: its endpoints are reached only from its own network")
ARGO_TEMPLATE_MISSING = Code("MP2050", Severity.WARNING, "Argo Rollout analysis names an "
                             "AnalysisTemplate or ClusterAnalysisTemplate that does not "
                             "exist (yet)")
ARGO_WORKLOAD_MISSING = Code("MP2066", Severity.WARNING, "Argo Rollout workloadRef names a "
                             "Deployment that does not exist (yet)")
TOO_DEEP = Code("MP0050", Severity.ERROR, "input nested deeper than the limit (100 levels)")
TOO_MANY_NODES = Code("MP0051", Severity.ERROR, "apply holds more YAML/JSON nodes than the "
                      "limit, aliases counted as the nodes they stand for")
BODY_TOO_LARGE = Code("MP0052", Severity.ERROR, "request body larger than the control "
                      "plane's limit (up --max-body-bytes)")
STORE_WRITE_FAILED = Code("MP0053", Severity.ERROR, "the config store could not be written "
                          "(disk full or I/O error): 507, nothing written")
PROBE_NOT_RUN = Code("MP0065", Severity.ERROR, "WorkloadGroup probe a host agent does not "
                     "run (grpc)")
JOIN_REFUSED = Code("MP0066", Severity.ERROR, "host join refused: the token is unknown, "
                    "expired, already used, or issued for another WorkloadGroup")
STORE_UNREACHABLE = Code("MP0060", Severity.ERROR, "the config store's etcd cluster did not "
                         "answer (no majority of its members reachable): 503, nothing written")
STORE_REFUSED = Code("MP0061", Severity.ERROR, "etcd refused the commit for one of its own "
                     "limits (--max-txn-ops, --max-request-bytes): 507, nothing written")
ARGO_FAIL_FAST_VALUE = Code("MP0069", Severity.ERROR, "Rollout annotation "
                             "meshpilot.io/fail-fast-min-success-rate is not a success "
                             "rate: give a percentage above 0 and at most 100")
HPA_NOT_COMPUTED = Code("MP0070", Severity.ERROR, "HorizontalPodAutoscaler metric, target "
                        "or scale target meshpilot does not compute (CPU and the mesh's "
                        "request rate only, of a Deployment)")
PLACEMENT_REFUSED = Code("MP0072", Severity.ERROR, "pod template placement meshpilot cannot "
                         "honour: nodeSelector or nodeAffinity beyond kubernetes.io/hostname "
                         "(and kubernetes.io/os: linux)")
NODE_NAME_REFUSED = Code("MP0083", Severity.ERROR, "joined host's node name refused: not a "
                         "DNS label, or the name of another host")
AUTOSCALER_REF_KIND = Code("MP0071", Severity.ERROR, "Canary autoscalerRef to a kind other "
                           "than HorizontalPodAutoscaler (a KEDA ScaledObject)")
UNKNOWN_SUBSET = Code("MP1001", Severity.ERROR, "subset not defined by any DestinationRule",
                      "IST0101")
HOST_CONFLICT = Code("MP1002", Severity.ERROR, "two VirtualServices claim one mesh host",
                     "IST0109")
CANARY_HOST_CLAIM = Code("MP1004", Severity.ERROR, "a Canary bound to the mesh lists a host "
                         "that is another service's (or '*')")
UNKNOWN_GATEWAY = Code("MP2004", Severity.WARNING, "VirtualService names a Gateway that "
                       "does not exist", "IST0101")
UNKNOWN_HOST = Code("MP2001", Severity.WARNING, "host has no Service, ServiceEntry or "
                    "WorkloadEntry behind it", "IST0101")
SUBSET_NO_WORKLOAD = Code("MP2002", Severity.WARNING, "subset selects no workload", "IST0173")
SPIFFE_PRINCIPAL = Code("MP2005", Severity.WARNING, "principal written with spiffe://, "
                        "which Istio does not match")
LOWERCASE_METHOD = Code("MP2006", Severity.WARNING, "HTTP method not in upper case")
PEER_AUTHN_CONFLICT = Code("MP2007", Severity.WARNING, "several mesh-wide or namespace-wide "
                           "PeerAuthentications: only the oldest is enforced")
PEER_AUTHN_ROOT_SELECTOR = Code("MP2008", Severity.WARNING, "PeerAuthentication with a "
                                "selector in the root namespace is ignored")
DUPLICATE_ISSUER = Code("MP2009", Severity.WARNING, "two JWT rules for one issuer on one "
                        "workload")
GATEWAY_BAD_CREDENTIAL = Code("MP1003", Severity.ERROR, "Gateway credentialName names a "
                              "Secret that cannot serve it", "IST0161")
GATEWAY_NO_CREDENTIAL = Code("MP2010", Severity.WARNING, "Gateway credentialName names no "
                             "Secret in the gateway's namespace", "IST0161")
PASSTHROUGH_NO_ROUTE = Code("MP2011", Severity.WARNING, "Gateway PASSTHROUGH server with no "
                            "VirtualService tls route for its hosts")
DR_NO_CREDENTIAL = Code("MP2012", Severity.WARNING, "DestinationRule credentialName names no "
                        "Secret in the rule's namespace")
TCP_SERVER_NO_ROUTE = Code("MP2013", Severity.WARNING, "Gateway TCP server (or TLS-terminating "
                           "server on a TLS port) with no VirtualService tcp route")
MESH_L4_ROUTE = Code("MP2014", Severity.WARNING, "VirtualService tcp or tls route for the mesh "
                     "on hosts with no TCP or TLS port (no sidecar listener)")
L4_SUBNET_MATCH = Code("MP2015", Severity.WARNING, "retired: destinationSubnets and "
                       "sourceSubnet are applied (no longer emitted)")
UNAPPLIED_FIELD = Code("MP2016", Severity.WARNING, "field accepted and not applied")
POD_FIELD_IGNORED = Code("MP2017", Severity.WARNING, "Deployment or pod template field the "
                         "local runtime does not act on")
INJECTION_NOT_APPLIED = Code("MP2018", Severity.WARNING, "sidecar injection turned off by a "
                             "label or annotation: meshpilot gives every pod a sidecar")
POD_CONFIG_MISSING = Code("MP2019", Severity.WARNING, "pod template reads a ConfigMap or Secret "
                          "that does not exist: its pods wait (CreateContainerConfigError)")
DELEGATE_UNUSABLE = Code("MP2023", Severity.WARNING, "VirtualService delegate not followed: "
                         "none without hosts by that name, or a delegate's own fields")
TEMPLATE_SECRET_MISSING = Code("MP2024", Severity.WARNING, "MetricTemplate secretRef names "
                               "no Secret in its namespace: its checks fail until it exists")
ALERT_PROVIDER_MISSING = Code("MP2025", Severity.WARNING, "Canary alert's providerRef names "
                              "no AlertProvider, or an AlertProvider's secretRef no Secret: "
                              "those alerts are not sent until it exists")
SIDECAR_INGRESS_TLS = Code("MP2028", Severity.WARNING, "Sidecar ingress tls not presented: "
                          "the port's PeerAuthentication mode is not DISABLE (as in Istio)")
SIDECAR_INGRESS_LOOP = Code("MP2029", Severity.WARNING, "Sidecar ingress listener that would "
                           "forward back to the sidecar on the pods it selects: left out there")
ARGO_FAIL_FAST_BLUE_GREEN = Code("MP2031", Severity.WARNING, "Rollout annotation "
                                  "meshpilot.io/fail-fast-min-success-rate on a blue-green "
                                  "Rollout: not acted on (no canary share to judge)")
TESTER_HOST_COMMAND = Code("MP2035", Severity.WARNING, "webhook runs a command on the "
                           "control plane's host: only with up --loadtester-commands")
MEMBER_WITHOUT_GROUP = Code("MP2043", Severity.WARNING, "WorkloadEntry annotated "
                            "istio.io/autoRegistrationGroup names no WorkloadGroup: an "
                            "endpoint only while a joined host reports for it")
HPA_FIELD_NOT_APPLIED = Code("MP2046", Severity.WARNING, "HorizontalPodAutoscaler or "
                             "autoscalerRef field accepted and not applied")
HPA_TARGET_MISSING = Code("MP2047", Severity.WARNING, "HorizontalPodAutoscaler's scale target, "
                          "or a Canary autoscalerRef's HorizontalPodAutoscaler, does not "
                          "exist: nothing is scaled until it does")
HPA_NO_CPU_REQUEST = Code("MP2048", Severity.WARNING, "HorizontalPodAutoscaler on CPU "
                          "utilization of a Deployment whose containers request no CPU: "
                          "the metric cannot be computed")
TEMPLATE_NOT_AS_WRITTEN = Code("MP2049", Severity.WARNING, "MetricTemplate part its "
                              "provider does not use as written: a secretRef Secret without "
                              "the keys it reads, a graphite query's format (always json)")
BAD_LOCALITY_SETTING = Code("MP0090", Severity.ERROR, "DestinationRule localityLbSetting "
                             "Istio refuses: distribute with failover, weights not summing "
                             "to 100, a failover region with '/' or '*', overlapping or "
                             "malformed localities")
BAD_LOCALITY = Code("MP0091", Severity.ERROR, "workload locality not of the form "
                    "region/zone/subzone (no '*', no empty part before a given one)")
WILDCARD_DNS_HOST = Code("MP0092", Severity.ERROR, "ServiceEntry wildcard host with "
                         "resolution DNS and no endpoints: there is no name to resolve")
FAILOVER_WITHOUT_OUTLIERS = Code("MP2060", Severity.WARNING, "locality failover or "
                                 "failoverPriority without outlierDetection: it never takes "
                                 "effect (Istio's validation warns the same)")
WILDCARD_COVERED_HOST = Code("MP2061", Severity.WARNING, "mesh VirtualService for a name "
                             "only a wildcard ServiceEntry host covers: not applied (the "
                             "pattern's routes serve it)")
RETRY_ON_PRIMARY_VALUE = Code("MP0084", Severity.ERROR, "annotation "
                              "meshpilot.io/retry-on-primary is not \"true\" or \"false\"")
RETRY_ON_PRIMARY_UNUSED = Code("MP2037", Severity.WARNING, "annotation "
                               "meshpilot.io/retry-on-primary not acted on: the canary has "
                               "no weighted share of user requests (blue-green, A/B, "
                               "mirror), or its VirtualService is a delegate or bound to "
                               "gateways only")
RETRY_ON_PRIMARY_ROLLOUT = Code("MP2038", Severity.WARNING, "annotation "
                                "meshpilot.io/retry-on-primary on an Argo Rollout: not "
                                "acted on (annotate its VirtualService, stable destination "
                                "first)")
DR_UNKNOWN_HOST = Code("MP2003", Severity.WARNING, "DestinationRule for an unknown host",
                       "IST0174")

ALL_CODES: tuple[Code, ...] = tuple(v for v in globals().values() if isinstance(v, Code))

# Pydantic error types (standard ones, and the ``mp_*`` custom ones raised by the
# models' validators) mapped to the code users see.
PYDANTIC_TYPES: MappingProxyType[str, Code] = MappingProxyType({
    "extra_forbidden": UNKNOWN_FIELD,
    "missing": MISSING_FIELD,
    "greater_than": OUT_OF_RANGE,
    "greater_than_equal": OUT_OF_RANGE,
    "less_than": OUT_OF_RANGE,
    "less_than_equal": OUT_OF_RANGE,
    "mp_range": OUT_OF_RANGE,
    "mp_duration": BAD_DURATION,
    "mp_regex": BAD_REGEX,
    "mp_weights": ZERO_WEIGHTS,
    "mp_value": INVALID_VALUE,
    "mp_type": WRONG_TYPE,
    "literal_error": INVALID_VALUE,
    "enum": INVALID_VALUE,
    "string_pattern_mismatch": INVALID_VALUE,
    "string_too_short": INVALID_VALUE,
    "string_too_long": INVALID_VALUE,
    "too_short": INVALID_VALUE,
    "too_long": INVALID_VALUE,
    "value_error": INVALID_VALUE,
})


def code_for_pydantic(error_type: str) -> Code:
    """Type errors (``int_type``, ``int_parsing``, ``dict_type``, …) are WRONG_TYPE."""
    return PYDANTIC_TYPES.get(error_type, WRONG_TYPE)
