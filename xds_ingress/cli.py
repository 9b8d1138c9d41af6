"""The `xds` command: serve the control plane, print an Envoy bootstrap."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys

import yaml

from xds_ingress import logs


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
                   help="where the ADS gRPC server listens (default 0.0.0.0:18000)")
    p.add_argument("--listen-address", default="0.0.0.0", metavar="ADDR",
                   help="address of Envoy's HTTP and HTTPS listeners (default 0.0.0.0; '::' for dual stack)")
    p.add_argument("--http-port", type=_port, default=8080, help="Envoy's HTTP listener port (default 8080)")
    p.add_argument("--https-port", type=_port, default=8443, help="Envoy's HTTPS listener port (default 8443)")
    p.add_argument("--ingress-class", default="xds", metavar="NAME",
                   help="the IngressClass served (its spec.controller must be xds-ingress.io/controller; default xds)")
    p.add_argument("--log-level", choices=logs.LEVELS, default="info")
    t = p.add_argument_group("TLS on the xDS port (the stream carries private keys: use it across hosts)")
    t.add_argument("--tls-cert", metavar="FILE", help="the server certificate (PEM) for the xDS port")
    t.add_argument("--tls-key", metavar="FILE", help="its private key (PEM)")
    t.add_argument("--client-ca", metavar="FILE",
                   help="require client certificates signed by this CA (PEM): mutual TLS with Envoy")


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
    return p


def cmd_bootstrap(args: argparse.Namespace) -> int:
    from xds_ingress.envoy.bootstrap import bootstrap_dict

    try:
        data = bootstrap_dict(xds_address=args.xds_address, node_id=args.node_id,
                              node_cluster=args.node_cluster, admin_address=args.admin_address,
                              health_port=args.health_port or 0, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                              tls_key=args.tls_key, tls_server_name=args.tls_server_name)
    except ValueError as exc:
        print(f"xds bootstrap: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from xds_ingress.app import App, ServeSettings
    from xds_ingress.translate import TranslateSettings

    logs.configure(args.log_level)
    if bool(args.tls_cert) != bool(args.tls_key) or (args.client_ca and not args.tls_cert):
        print("xds serve: --tls-cert and --tls-key go together, and --client-ca needs them", file=sys.stderr)
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
        translate=TranslateSettings(ingress_class=args.ingress_class, listen_address=args.listen_address,
                                    http_port=args.http_port, https_port=args.https_port),
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

    asyncio.run(main())
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "bootstrap":
        return cmd_bootstrap(args)
    if args.command == "serve":
        return cmd_serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
