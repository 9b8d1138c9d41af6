"""The `xds` command: serve the control plane, print an Envoy bootstrap, look at a running control
plane (status, config-dump, explain, diagnostics), check manifests offline (translate, validate)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sys

import yaml

from xds_ingress import logs

MAX_XFF_HOPS = 10


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the control plane (ADS on --xds-address)")
    p.add_argument("--manifests", metavar="DIR", action="append",
                   help="a directory (read recursively) or file of Kubernetes manifests; repeatable. "
                        "Without it, objects are read from the Kubernetes API.")
    k = p.add_argument_group("Kubernetes API (when --manifests is not given)")
    k.add_argument("--kubeconfig", metavar="FILE",
                   help="kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster service account)")
    k.add_argument("--namespace", action="append", metavar="NS", dest="namespaces",
                   help="watch only this namespace; repeatable (default: all namespaces)")
    k.add_argument("--publish-service", metavar="NAMESPACE/NAME",
                   help="the Envoy Service of type LoadBalancer whose address is written into served Ingresses' status")
    k.add_argument("--leader-elect", action="store_true",
                   help="elect a leader with a Lease; only the leader writes status and Events")
    k.add_argument("--leader-election-namespace", metavar="NS",
                   default=os.environ.get("POD_NAMESPACE", "xds-ingress"),
                   help="namespace of the Lease (default: $POD_NAMESPACE or xds-ingress)")
    k.add_argument("--identity", metavar="NAME", default=os.environ.get("POD_NAME") or socket.gethostname(),
                   help="this replica's name in the Lease (default: $POD_NAME or the host name)")
    p.add_argument("--xds-address", default="0.0.0.0:18000", metavar="HOST:PORT",
                   help="where the ADS gRPC server (and CSDS) listens (default 0.0.0.0:18000)")
    p.add_argument("--debug-address", default="127.0.0.1:9090", metavar="HOST:PORT",
                   help="the debug HTTP endpoint: /healthz, /readyz, /metrics, /debug/... (default 127.0.0.1:9090, "
                        "loopback; 'off' to disable)")
    p.add_argument("--listen-address", default="0.0.0.0", metavar="ADDR",
                   help="address of Envoy's HTTP and HTTPS listeners (default 0.0.0.0; '::' for dual stack)")
    p.add_argument("--http-port", type=_port, default=8080, help="Envoy's HTTP listener port (default 8080)")
    p.add_argument("--https-port", type=_port, default=8443, help="Envoy's HTTPS listener port (default 8443)")
    p.add_argument("--ingress-class", default="xds", metavar="NAME",
                   help="the IngressClass served (its spec.controller must be xds-ingress.io/controller; default xds)")
    _add_compat(p)
    _add_default_certificate(p)
    _add_hsts(p)
    p.add_argument("--log-level", choices=logs.LEVELS, default="info")
    _add_edge(p)
    _add_auth(p)
    t = p.add_argument_group("TLS on the xDS port (the stream carries private keys: use it across hosts)")
    t.add_argument("--tls-cert", metavar="FILE", help="the server certificate (PEM) for the xDS port")
    t.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    t.add_argument("--client-ca", metavar="FILE",
                   help="require client certificates signed by this CA (PEM): mutual TLS with Envoy")


def _add_auth(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group("external authorization of every route (an Ingress opts out with "
                             "xds-ingress.io/auth: \"off\")")
    a.add_argument("--auth-service", metavar="URL", type=_auth_service, default="",
                   help="ask this service about every request: http://HOST:PORT[/path-prefix] (HTTP: a 2xx answer "
                        "allows) or grpc://HOST:PORT (envoy.service.auth.v3.Authorization)")
    a.add_argument("--auth-failure-mode", choices=("closed", "open"), default="closed",
                   help="when the service cannot be reached or fails: closed (403, the default) or open (the "
                        "request goes through)")
    a.add_argument("--auth-timeout", metavar="DURATION", type=_auth_timeout, default=1000,
                   help="how long a check may take, e.g. 500ms or 2s (default 1s); past it the failure mode applies")


def _auth_service(value: str) -> str:
    from xds_ingress.translate.auth import auth_service_url

    if not value.strip():
        return ""  # none
    try:
        auth_service_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value.strip()


def _add_edge(p: argparse.ArgumentParser) -> None:
    """Settings of the edge that annotations rely on: the client address, the rate limit service."""
    e = p.add_argument_group("client addresses and global rate limits")
    e.add_argument("--xff-num-trusted-hops", type=_hops, default=0, metavar="N",
                   help="load balancers in front of Envoy that append the client to X-Forwarded-For: the client "
                        "address (allow/deny-source-ranges, rate-limit-key client-ip) is taken N hops from its right "
                        "(default 0: the connection's peer; a client-sent X-Forwarded-For is never trusted)")
    e.add_argument("--rate-limit-service", type=_service_address, metavar="HOST:PORT",
                   help="the gRPC rate limit service (envoy.service.ratelimit.v3) that global-rate-limit asks "
                        "(default: none, global-rate-limit is refused)")
    e.add_argument("--rate-limit-domain", type=_domain, metavar="NAME",
                   help="the domain of the descriptors sent (default xds-ingress)")
    e.add_argument("--rate-limit-failure-mode", choices=("open", "closed"), default="open",
                   help="when the rate limit service cannot answer: open lets requests through (the default), "
                        "closed refuses them (500)")
    e.add_argument("--rate-limit-timeout", type=_timeout, default=100, metavar="DURATION",
                   help="how long Envoy waits for the rate limit service (default 100ms; then the failure mode "
                        "applies)")
    e.add_argument("--connection-limit-service", type=_service_address, metavar="HOST:PORT",
                   help="the connection limiter (`xds connection-limiter`) that counts requests in progress per "
                        "client address for ingress-nginx's limit-connections; unreachable: requests go through "
                        "(default: none, limit-connections is refused)")
    e.add_argument("--connection-limit-timeout", type=_timeout, default=200, metavar="DURATION",
                   help="how long Envoy waits for the connection limiter's verdict (default 200ms; then the "
                        "request goes through uncounted)")


def _hops(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= MAX_XFF_HOPS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of hops from 0 to {MAX_XFF_HOPS}")
    return int(value)


def _service_address(value: str) -> str:
    from xds_ingress.translate.edge_policies import split_host_port

    try:
        split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value.strip()


def _auth_timeout(value: str) -> int:
    from xds_ingress.translate import parsers

    try:
        return parsers.duration(min_ms=1, max_ms=60_000, zero=False)(value)
    except parsers.Invalid as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not {exc.accepted}") from None


def _domain(value: str) -> str:
    import re

    if not re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a domain (letters, digits and ._-, at most 64)")
    return value


def _timeout(value: str) -> int:
    from xds_ingress.translate.parsers import Invalid, duration

    try:
        return duration(min_ms=1, max_ms=60_000, zero=False)(value)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not {exc.accepted}") from None


def _add_bootstrap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bootstrap", help="print an Envoy bootstrap (YAML) that connects to the control plane")
    p.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="the control plane's ADS address")
    p.add_argument("--node-id", default="envoy", metavar="ID",
                   help="the Envoy node id (default 'envoy'; Envoy's --service-node overrides it)")
    p.add_argument("--node-cluster", default="xds-ingress", metavar="NAME", help="the Envoy node cluster")
    p.add_argument("--admin-address", default="127.0.0.1:9901", metavar="HOST:PORT",
                   help="Envoy's admin interface (default loopback 127.0.0.1:9901; keep it off the network)")
    p.add_argument("--tls-ca", metavar="FILE",
                   help="connect to the control plane over TLS, checking its certificate against this CA (PEM path "
                        "as seen by Envoy)")
    p.add_argument("--tls-cert", metavar="FILE", help="Envoy's client certificate (PEM path as seen by Envoy), for mTLS")
    p.add_argument("--tls-key", metavar="FILE", help="the client certificate's private key (PEM path as seen by Envoy)")
    p.add_argument("--tls-server-name", metavar="NAME",
                   help="the name expected in the control plane's certificate (default: the host of --xds-address)")
    p.add_argument("--health-port", type=_port, default=None, metavar="N",
                   help="add a listener on 0.0.0.0:N that answers GET /ready from the admin interface, "
                        "for readiness probes (default: none)")
    p.add_argument("--xds-protocol", choices=("delta", "sotw"), default="delta",
                   help="the xDS variant Envoy speaks over ADS: delta (incremental, the default) or sotw "
                        "(state of the world); the control plane serves both")


def _add_remote(sub: argparse._SubParsersAction) -> None:
    from xds_ingress.ops import DEFAULT_SERVER

    def server(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", default=DEFAULT_SERVER, metavar="URL",
                       help=f"the control plane's debug endpoint (default {DEFAULT_SERVER})")

    p = sub.add_parser("status", help="the connected Envoys: SYNCED / STALE / NACKED / NOT_SENT per xDS type "
                                      "(exit 1 when any is NACKED)")
    server(p)
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p = sub.add_parser("config-dump", help="the resources as sent to a node (without NODE: the current snapshot), "
                                           "secrets redacted")
    p.add_argument("node", nargs="?", metavar="NODE", help="the Envoy node id")
    p.add_argument("--type", metavar="T",
                   help="only these types: clusters, listeners, routes, endpoints, secrets (comma-separated)")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default="json")
    server(p)
    p = sub.add_parser("explain", help="which Ingress rule, backend and endpoints a request reaches, or why it gets "
                                       "404/503")
    p.add_argument("--host", required=True, help="the Host header (a port and case do not matter)")
    p.add_argument("--path", default="/", help="the request path (default /)")
    p.add_argument("--https", action="store_true", help="the request comes over HTTPS (SNI = the host)")
    p.add_argument("--sni", metavar="NAME", help="with --https: the TLS server name, when it is not the host's")
    p.add_argument("--header", action="append", metavar="NAME:VALUE",
                   help="a request header, e.g. 'x-canary: always' or 'cookie: canary=always'; repeatable")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    server(p)
    p = sub.add_parser("diagnostics", help="every current diagnostic, by object")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    server(p)


def _add_offline(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("-f", "--filename", dest="paths", action="extend", nargs="+", required=True, metavar="PATH",
                       help="manifest files or directories (read recursively); repeatable")
        p.add_argument("--ingress-class", default="xds", metavar="NAME", help="the IngressClass served (default xds)")
        _add_compat(p)
        p.add_argument("--listen-address", default="0.0.0.0", metavar="ADDR",
                       help="address of Envoy's listeners (default 0.0.0.0)")
        p.add_argument("--http-port", type=_port, default=8080, help="Envoy's HTTP listener port (default 8080)")
        p.add_argument("--https-port", type=_port, default=8443, help="Envoy's HTTPS listener port (default 8443)")
        _add_edge(p)
        _add_default_certificate(p)
        _add_auth(p)
        _add_hsts(p)

    p = sub.add_parser("translate", help="offline: manifests in, Envoy resources out (secrets redacted) and the "
                                         "diagnostics; exit 1 on any error diagnostic")
    common(p)
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p = sub.add_parser("validate", help="offline: translate, then check the result with `envoy --mode validate`; "
                                        "exit non-zero on any failure (the pre-apply check for CI)")
    common(p)
    p.add_argument("--envoy", metavar="PATH", help="the envoy binary (default: envoy on PATH, or next to Python)")


def _add_migrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("migrate", help="from ingress-nginx: per Ingress and annotation, translated exactly, with a "
                                       "stated difference, or unsupported (reason, replacement); a summary by "
                                       "annotation; exit 1 when anything is unsupported")
    p.add_argument("-f", "--filename", dest="paths", action="extend", nargs="+", default=[], metavar="PATH",
                   help="manifest files or directories (read recursively); repeatable")
    p.add_argument("--from-cluster", action="store_true",
                   help="read the objects from the Kubernetes API instead (one list, as xds serve does)")
    p.add_argument("--kubeconfig", metavar="FILE", help="with --from-cluster: the kubeconfig file")
    p.add_argument("--ingress-class", default="nginx", metavar="NAME",
                   help="the IngressClass the Ingresses use (default nginx; added when the manifests lack it)")
    p.add_argument("--controller", default=None, metavar="NAME",
                   help="its spec.controller (default k8s.io/ingress-nginx)")
    _add_allowed_headers(p)
    p.add_argument("--allow-unsupported", action="store_true",
                   help="exit 0 even when annotations are unsupported, invalid or unknown")
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")


def _add_compat(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nginx-compat", action="store_true",
                   help="also read ingress-nginx's nginx.ingress.kubernetes.io/ annotations, with its semantics (ours "
                        "win when both are set); see docs/moving-from-ingress-nginx.md")
    p.add_argument("--controller", metavar="NAME",
                   help="the spec.controller of the IngressClass served (default xds-ingress.io/controller; with "
                        "--nginx-compat and --ingress-class nginx: k8s.io/ingress-nginx, to take over ingress-nginx's "
                        "class)")
    p.add_argument("--default-backend-service", type=_default_backend_service, default=None,
                   metavar="NAMESPACE/NAME[:PORT]",
                   help="with --nginx-compat: the Service (its first port unless PORT, a number or a port's name) that "
                        "answers the custom-http-errors of Ingresses without a default-backend annotation (ingress-"
                        "nginx's flag; unlike there, it does not serve unmatched requests: use spec.defaultBackend)")
    _add_allowed_headers(p)


def _add_allowed_headers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--global-allowed-response-headers", type=_allowed_headers, default=(), metavar="NAMES",
                   help="with --nginx-compat: the response headers that the ConfigMaps of ingress-nginx's "
                        "custom-headers annotation may set, comma-separated (ingress-nginx's ConfigMap key "
                        "global-allowed-response-headers; default: none, so custom-headers sets nothing)")


def _allowed_headers(value: str) -> tuple[str, ...]:
    from xds_ingress.translate import parsers

    if not value.strip():
        return ()
    try:
        names = parsers.list_of(lambda v: parsers.header_name(v, request=True), what="header names",
                                max_items=256)(value)
    except parsers.Invalid as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not {exc.accepted}") from None
    return tuple(sorted(names))


def _default_backend_service(value: str) -> str:
    from xds_ingress.translate.error_pages import parse_default_backend_service

    try:
        ns, name, port = parse_default_backend_service(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return f"{ns}/{name}" + (f":{port}" if port is not None else "")


def _controller(args: argparse.Namespace) -> str:
    from xds_ingress.translate.settings import CONTROLLER_NAME, NGINX_CONTROLLER_NAME

    if args.controller:
        return args.controller
    if args.nginx_compat and args.ingress_class == "nginx":
        return NGINX_CONTROLLER_NAME
    return CONTROLLER_NAME
def _add_default_certificate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--default-certificate", type=_secret_ref, default=None, metavar="NAMESPACE/NAME",
                   help="a kubernetes.io/tls Secret served to TLS clients whose server name (SNI) has no certificate "
                        "of its own, or that send none (default: none, their handshake fails)")


def _add_hsts(p: argparse.ArgumentParser) -> None:
    h = p.add_argument_group("HSTS for every host served with a certificate of its own (an Ingress's "
                             "xds-ingress.io/hsts* annotations win)")
    h.add_argument("--hsts-max-age", type=_hsts_max_age, default=None, metavar="SECONDS",
                   help="HTTPS responses carry Strict-Transport-Security with this max-age (seconds, or a duration in "
                        "whole seconds such as 8760h; default: none); ingress-nginx's ConfigMap hsts-max-age")
    h.add_argument("--hsts-include-subdomains", action="store_true",
                   help="with --hsts-max-age: add includeSubDomains (ingress-nginx's hsts-include-subdomains)")
    h.add_argument("--hsts-preload", action="store_true",
                   help="with --hsts-max-age of a year or more and --hsts-include-subdomains: add preload "
                        "(ingress-nginx's hsts-preload)")


def _hsts_max_age(value: str) -> int:
    from xds_ingress.translate.parsers import Invalid, hsts_max_age

    try:
        return hsts_max_age(value)
    except Invalid as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not {exc.accepted}") from None


def _hsts_problem(args: argparse.Namespace) -> str:
    """Why the --hsts-* flags do not go together, or ""."""
    from xds_ingress.translate.tls import ONE_YEAR_S

    max_age = getattr(args, "hsts_max_age", None)
    if max_age is None and (getattr(args, "hsts_include_subdomains", False) or getattr(args, "hsts_preload", False)):
        return "--hsts-include-subdomains and --hsts-preload need --hsts-max-age"
    if getattr(args, "hsts_preload", False) and (max_age < ONE_YEAR_S or not args.hsts_include_subdomains):
        return (f"--hsts-preload needs --hsts-max-age of at least {ONE_YEAR_S} (a year) and "
                "--hsts-include-subdomains (what browsers' preload lists require)")
    return ""


def _secret_ref(value: str) -> str:
    label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
    if not re.fullmatch(rf"{label}/{label}(\.{label})*", value) or len(value) > 317:
        raise argparse.ArgumentTypeError(f"{value!r} is not NAMESPACE/NAME of a Secret")
    return value


def _port(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range (1-65535)")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xds", description="xds-ingress: an Envoy control plane for Kubernetes Ingress")
    sub = p.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_bootstrap(sub)
    _add_remote(sub)
    _add_offline(sub)
    _add_migrate(sub)
    _add_connection_limiter(sub)
    return p


def _add_connection_limiter(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("connection-limiter",
                       help="count requests in progress per client address for Envoy (ext_proc; the service that "
                            "xds serve --connection-limit-service names)")
    p.add_argument("--listen", default="0.0.0.0:18081", metavar="HOST:PORT",
                   help="where the gRPC service listens (default 0.0.0.0:18081)")
    p.add_argument("--max-keys", type=_positive, default=1_000_000, metavar="N",
                   help="(Ingress, client address) pairs counted at once; a new one beyond is not counted "
                        "(default 1000000)")
    p.add_argument("--max-streams", type=_positive, default=100_000, metavar="N",
                   help="requests followed at once; beyond, Envoy lets requests through uncounted (default 100000)")
    p.add_argument("--log-level", choices=logs.LEVELS, default="info")


def _positive(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100_000_000:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number from 1 to 100000000")
    return int(value)


def cmd_connection_limiter(args: argparse.Namespace) -> int:
    from xds_ingress.connection_limiter import serve
    from xds_ingress.envoy.bootstrap import split_host_port

    try:
        split_host_port(args.listen)
    except ValueError as exc:
        print(f"xds connection-limiter: --listen: {exc}", file=sys.stderr)
        return 2
    logs.configure(args.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(args.listen, max_keys=args.max_keys, max_streams=args.max_streams, stop=stop)

    try:
        asyncio.run(main())
    except (OSError, RuntimeError) as exc:
        print(f"xds connection-limiter: {exc}. Choose another --listen.", file=sys.stderr)
        return 2
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from xds_ingress.envoy.bootstrap import bootstrap_dict

    try:
        data = bootstrap_dict(xds_address=args.xds_address, node_id=args.node_id,
                              node_cluster=args.node_cluster, admin_address=args.admin_address,
                              health_port=args.health_port or 0, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                              tls_key=args.tls_key, tls_server_name=args.tls_server_name,
                              xds_protocol=args.xds_protocol)
    except ValueError as exc:
        print(f"xds bootstrap: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from xds_ingress.app import App, ServeSettings

    logs.configure(args.log_level)
    if bool(args.tls_cert) != bool(args.tls_key) or (args.client_ca and not args.tls_cert):
        print("xds serve: --tls-cert and --tls-key go together, and --client-ca needs them", file=sys.stderr)
        return 2
    debug_address = None if args.debug_address.lower() in ("off", "none", "") else args.debug_address
    if debug_address is not None:
        from xds_ingress.envoy.bootstrap import split_host_port

        try:
            split_host_port(debug_address)
        except ValueError as exc:
            print(f"xds serve: --debug-address: {exc}", file=sys.stderr)
            return 2
    publish = None
    if args.publish_service:
        ns, _, name = args.publish_service.partition("/")
        if not ns or not name:
            print("xds serve: --publish-service must be NAMESPACE/NAME", file=sys.stderr)
            return 2
        publish = (ns, name)
    settings = ServeSettings(
        manifests=tuple(args.manifests or ()),
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespaces or ()),
        publish_service=publish,
        leader_elect=args.leader_elect,
        leader_election_namespace=args.leader_election_namespace,
        identity=args.identity,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        xds_address=args.xds_address,
        debug_address=debug_address,
        translate=_translate_settings(args),
    )

    try:
        app = App(settings)
    except Exception as exc:  # noqa: BLE001 - kubeconfig missing or unreadable
        print(f"xds serve: cannot reach the Kubernetes API ({type(exc).__name__}: {exc}). Pass --manifests DIR to "
              "serve a directory of manifests, or --kubeconfig FILE.", file=sys.stderr)
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await app.start()
        try:
            await stop.wait()
        finally:
            await app.stop()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"xds serve: {exc}. Choose another --xds-address or --debug-address.", file=sys.stderr)
        return 2
    return 0


def _translate_settings(args: argparse.Namespace):
    from xds_ingress.translate import TranslateSettings
    from xds_ingress.translate.settings import DEFAULT_RATE_LIMIT_DOMAIN

    problem = _hsts_problem(args)
    if problem:
        print(f"xds {args.command}: {problem}", file=sys.stderr)
        raise SystemExit(2)
    return TranslateSettings(ingress_class=args.ingress_class, listen_address=args.listen_address,
                             http_port=args.http_port, https_port=args.https_port, controller=_controller(args),
                             nginx_compat=args.nginx_compat,
                             xff_num_trusted_hops=args.xff_num_trusted_hops,
                             rate_limit_service=args.rate_limit_service,
                             rate_limit_domain=args.rate_limit_domain or DEFAULT_RATE_LIMIT_DOMAIN,
                             rate_limit_failure_mode_deny=args.rate_limit_failure_mode == "closed",
                             rate_limit_timeout_ms=args.rate_limit_timeout,
                             default_certificate=args.default_certificate or "",
                             auth_service=args.auth_service, auth_failure_mode=args.auth_failure_mode,
                             auth_timeout_ms=args.auth_timeout,
                             hsts_max_age_s=args.hsts_max_age, hsts_include_subdomains=args.hsts_include_subdomains,
                             hsts_preload=args.hsts_preload,
                             connection_limit_service=args.connection_limit_service,
                             connection_limit_timeout_ms=args.connection_limit_timeout,
                             default_backend_service=args.default_backend_service or "",
                             global_allowed_response_headers=args.global_allowed_response_headers)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "bootstrap":
        return cmd_bootstrap(args)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "connection-limiter":
        return cmd_connection_limiter(args)
    from xds_ingress import ops
    from xds_ingress.translate import TranslateSettings

    if args.command == "status":
        return ops.status(args.server, args.output)
    if args.command == "config-dump":
        return ops.config_dump(args.server, args.node, args.type, args.output)
    if args.command == "explain":
        return ops.explain(args.server, args.host, args.path, args.https, args.output, headers=args.header,
                           sni=args.sni)
    if args.command == "diagnostics":
        return ops.diagnostics(args.server, args.output)
    if args.command == "migrate":
        from xds_ingress.migrate import migrate_cmd
        from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

        settings = TranslateSettings(ingress_class=args.ingress_class, nginx_compat=True,
                                     controller=args.controller or NGINX_CONTROLLER_NAME,
                                     global_allowed_response_headers=args.global_allowed_response_headers)
        if args.from_cluster == bool(args.paths):
            print("xds migrate: give either -f PATH... or --from-cluster", file=sys.stderr)
            return 2
        return migrate_cmd(args.paths, settings, from_cluster=args.from_cluster, kubeconfig=args.kubeconfig,
                           output=args.output, allow_unsupported=args.allow_unsupported)
    if args.command == "translate":
        return ops.translate_cmd(args.paths, _translate_settings(args), args.output)
    if args.command == "validate":
        return ops.validate_cmd(args.paths, _translate_settings(args), args.envoy)
    return 2


if __name__ == "__main__":
    sys.exit(main())
