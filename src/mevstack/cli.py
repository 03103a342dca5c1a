"""The ``mevstack`` command line: argument parsing and dispatch to the feature packages.

A user mistake (bad config, unreachable node, wrong password) is one line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mevstack import __version__
from mevstack.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from mevstack.errors import MevstackError

Handler = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


def cmd_up(args: argparse.Namespace) -> int:
    import asyncio

    from mevstack.engine.engine import running_stack, serve
    from mevstack.obs.log import configure_logging

    settings = _settings(args)
    configure_logging(args.log_level)
    asyncio.run(serve(running_stack(settings, scan_in_process=args.scan_process)))
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    import asyncio

    from mevstack.engine.engine import running_engine, serve
    from mevstack.obs.log import configure_logging

    settings = _settings(args)
    configure_logging(args.log_level)
    asyncio.run(
        serve(
            running_engine(
                settings,
                port=args.port,
                standby=args.standby,
                scan_in_process=args.scan_process,
            )
        )
    )
    return 0


def cmd_gateway(args: argparse.Namespace) -> int:
    import asyncio

    from mevstack.gateway.server import serve_gateway
    from mevstack.obs.log import configure_logging

    settings = _settings(args)
    configure_logging(args.log_level)
    asyncio.run(serve_gateway(settings))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import asyncio

    from mevstack.dashboard.server import serve_dashboard
    from mevstack.obs.log import configure_logging

    settings = _settings(args)
    configure_logging(args.log_level)
    server = settings.server
    print(f"dashboard: http://{server.host}:{server.dashboard_port}/", file=sys.stderr)
    asyncio.run(serve_dashboard(settings))
    return 0


def cmd_devnet(args: argparse.Namespace) -> int:
    from mevstack.devnet.command import DevnetOptions, run_devnet

    return run_devnet(
        DevnetOptions(
            out=args.out,
            chains=args.chains,
            base_port=args.base_port,
            time_scale=args.time_scale,
            activity=args.activity,
            seed=args.seed,
            log_dir=args.log_dir,
        )
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from mevstack.devnet.demo import DemoOptions, run_demo
    from mevstack.obs.log import configure_logging

    configure_logging(args.log_level)
    return run_demo(
        DemoOptions(
            state_dir=args.state_dir,
            chains=args.chains,
            base_port=args.base_port,
            engine_port=args.engine_port,
            gateway_port=args.gateway_port,
            ws_port=args.ws_port,
            dashboard_port=args.dashboard_port,
            time_scale=args.time_scale,
        )
    )


def cmd_scan(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from mevstack.engine.scan import ScanIncomplete, render_text, scan_once

    report = asyncio.run(scan_once(_settings(args)))
    if report.failures and not args.partial:
        raise ScanIncomplete("; ".join(report.failures))
    for line in report.failures:
        print(f"mevstack: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps([o.to_json() for o in report.opportunities]))
    else:
        print(render_text(report))
    if report.failures:
        return ScanIncomplete.exit_code
    return 0


def cmd_executor_deploy(args: argparse.Namespace) -> int:
    import asyncio

    from mevstack.execution.deploy import deploy_from_settings

    deployed = asyncio.run(deploy_from_settings(_settings(args), args.chain, args.owner))
    for warning in deployed.warnings:
        print(f"mevstack: warning: {warning}", file=sys.stderr)
    print(f"executor deployed on chain {args.chain} (id {deployed.chain_id})")
    print(f"operator: {deployed.operator}")
    print(f"owner: {deployed.owner}")
    print(deployed.address)
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    import asyncio

    from mevstack.api.auth import create_token
    from mevstack.api.server import open_store
    from mevstack.api.store_view import StoreTokens

    settings = _settings(args)
    store = open_store(settings)
    try:
        token, record = asyncio.run(create_token(StoreTokens(store), args.name, args.scopes))
    finally:
        store.close()
    print(
        f"token {record.name!r} ({','.join(record.scopes)}); shown once, only its hash is kept:",
        file=sys.stderr,
    )
    print(token)
    return 0


def cmd_key(args: argparse.Namespace) -> int:
    import os

    from mevstack.execution.keystore_cli import key_address, key_import, key_new

    settings = _settings(args)
    if args.key_command == "new":
        address = key_new(settings, os.environ)
        print(f"created keystore {settings.execution.keystore}", file=sys.stderr)
    elif args.key_command == "import":
        address = key_import(settings, os.environ, sys.stdin)
        print(f"imported into keystore {settings.execution.keystore}", file=sys.stderr)
    else:
        address = key_address(settings)
    print(address)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        metavar="FILE",
        help="config file (default: ./mevstack.toml)",
    )

    parser = argparse.ArgumentParser(
        prog="mevstack", description="MEV infrastructure: scan, simulate, execute, serve."
    )
    parser.add_argument("--version", action="version", version=f"mevstack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    up = add(
        "up",
        cmd_up,
        "the whole stack: the engine, and the gateway, WebSocket and dashboard in a child process",
    )
    engine = add("engine", cmd_engine, "one engine replica")
    for p in (up, engine):
        p.add_argument("--log-level", default="info", help="debug, info, warning or error")
        p.add_argument(
            "--scan-process",
            action="store_true",
            help="run arbitrage scans in a worker process (keeps the event loop free)",
        )
    engine.add_argument("--port", type=int, help="API port (default: server.engine_port)")
    engine.add_argument("--standby", action="store_true", help="run as the hot standby replica")

    devnet = add("devnet", cmd_devnet, "start the local multi-chain devnet and write its config")
    devnet.add_argument("--out", type=Path, default=Path("devnet.toml"), metavar="FILE")
    devnet.add_argument("--activity", action="store_true", help="run noise traders")
    devnet.add_argument(
        "--chains",
        default="ethereum,arbitrum,optimism,polygon,base",
        help="comma-separated chains to start (default: all five)",
    )
    devnet.add_argument("--base-port", type=int, default=8545, help="first anvil port")
    devnet.add_argument(
        "--time-scale",
        type=float,
        default=0.25,
        help="block time = real block time x this factor (default 0.25)",
    )
    devnet.add_argument("--seed", type=int, default=0, help="seed of prices and noise trades")
    devnet.add_argument(
        "--log-dir", type=Path, default=None, metavar="DIR", help="write anvil logs here"
    )

    demo = add("demo", cmd_demo, "devnet + market activity + the whole stack")
    demo.add_argument("--log-level", default="info", help="debug, info, warning or error")
    demo.add_argument("--state-dir", type=Path, default=Path(".mevstack/demo"), metavar="DIR")
    demo.add_argument(
        "--chains",
        default="ethereum,arbitrum,optimism,polygon,base",
        help="comma-separated devnet chains (default: all five)",
    )
    demo.add_argument("--base-port", type=int, default=8545, help="first anvil port")
    demo.add_argument("--engine-port", type=int, default=8082)
    demo.add_argument("--gateway-port", type=int, default=8093)
    demo.add_argument("--ws-port", type=int, default=8094)
    demo.add_argument("--dashboard-port", type=int, default=5002)
    demo.add_argument("--time-scale", type=float, default=0.25, help="block time factor")
    gateway = add("gateway", cmd_gateway, "the REST gateway (8093) and the WebSocket (8094)")
    gateway.add_argument("--log-level", default="info", help="debug, info, warning or error")
    dashboard = add("dashboard", cmd_dashboard, "the web dashboard (5002)")
    dashboard.add_argument("--log-level", default="info", help="debug, info, warning or error")

    scan = add("scan", cmd_scan, "scan the latest block of every chain once")
    scan.add_argument("--once", action="store_true", required=True)
    scan.add_argument("--json", action="store_true", help="one JSON array on stdout")
    scan.add_argument("--partial", action="store_true", help="print what reachable chains gave")

    executor = sub.add_parser("executor", help="the executor contract")
    executor_sub = executor.add_subparsers(dest="executor_command", required=True)
    deploy = executor_sub.add_parser(
        "deploy", parents=[common], help="compile and deploy the executor contract"
    )
    deploy.add_argument("--chain", required=True, metavar="NAME")
    deploy.add_argument("--owner", metavar="ADDR")
    deploy.set_defaults(handler=cmd_executor_deploy)

    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", parents=[common], help="mint an API token")
    create.add_argument("--name", required=True)
    create.add_argument("--scopes", required=True, help="comma-separated: read,trade,admin")
    create.set_defaults(handler=cmd_token_create)

    key = sub.add_parser("key", help="the operator key")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    for name, text in (
        ("new", "create a new keystore"),
        ("import", "import a private key into the keystore"),
        ("address", "print the operator address"),
    ):
        key_sub.add_parser(name, parents=[common], help=text).set_defaults(handler=cmd_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except MevstackError as exc:
        print(f"mevstack: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
