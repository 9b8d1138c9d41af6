"""xDS type URLs, in the order a change is pushed (make before break)."""

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# CDS, then EDS, then LDS, then RDS; SDS last (listeners warm until their secrets arrive).
PUSH_ORDER = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
ALL = PUSH_ORDER
# Types whose state-of-the-world responses carry the complete set (a missing name is a deletion).
FULL_STATE = frozenset({LISTENER, CLUSTER})

SHORT_NAMES = {
    LISTENER: "listeners",
    ROUTE: "routes",
    CLUSTER: "clusters",
    ENDPOINT: "endpoints",
    SECRET: "secrets",
}
BY_SHORT_NAME = {v: k for k, v in SHORT_NAMES.items()}
