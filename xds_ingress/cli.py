"""The `xds` command: serve the control plane, print an Envoy bootstrap."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import yaml

from xds_ingress import logs


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the control plane (ADS on --xds-address)")
    p.add_argument("--manifests", metavar="DIR", action="append", required=True,
                   help="a directory (read recursively) or file of Kubernetes manifests; repeatable")
    p.add_argument("--xds-address", default="0.0.0.0:18000", metavar="HOST:PORT",
                   help="where the ADS gRPC server listens (default 0.0.0.0:18000)")
    p.add_argument("--listen-address", default="0.0.0.0", metavar="ADDR",
                   help="address of Envoy's HTTP and HTTPS listeners (default 0.0.0.0; '::' for dual stack)")
    p.add_argument("--http-port", type=_port, default=8080, help="Envoy's HTTP listener port (default 8080)")
    p.add_argument("--https-port", type=_port, default=8443, help="Envoy's HTTPS listener port (default 8443)")
    p.add_argument("--ingress-class", default="xds", metavar="NAME",
                   help="the IngressClass served (its spec.controller must be xds-ingress.io/controller; default xds)")
    p.add_argument("--log-level", choices=logs.LEVELS, default="info")


def _add_bootstrap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bootstrap", help="print an Envoy bootstrap (YAML) that connects to the control plane")
    p.add_argument("--xds-address", required=True, metavar="HOST:PORT", help="the control plane's ADS address")
    p.add_argument("--node-id", default="envoy", metavar="ID",
                   help="the Envoy node id (default 'envoy'; Envoy's --service-node overrides it)")
    p.add_argument("--node-cluster", default="xds-ingress", metavar="NAME", help="the Envoy node cluster")
    p.add_argument("--admin-address", default="127.0.0.1:9901", metavar="HOST:PORT",
                   help="Envoy's admin interface (default loopback 127.0.0.1:9901; keep it off the network)")


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
                              node_cluster=args.node_cluster, admin_address=args.admin_address)
    except ValueError as exc:
        print(f"xds bootstrap: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from xds_ingress.app import App, ServeSettings
    from xds_ingress.translate import TranslateSettings

    logs.configure(args.log_level)
    settings = ServeSettings(
        manifests=tuple(args.manifests),
        xds_address=args.xds_address,
        translate=TranslateSettings(ingress_class=args.ingress_class, listen_address=args.listen_address,
                                    http_port=args.http_port, https_port=args.https_port),
    )

    async def main() -> None:
        app = App(settings)
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
