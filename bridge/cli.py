"""``crm-bridge``: serve, check the configuration, inspect and re-drive the journal.

::

    crm-bridge serve  --config FILE            run the service
    crm-bridge check  --config FILE            validate settings, call the CRM once
    crm-bridge status --config FILE [--json]   counts by state, oldest pending
    crm-bridge replay --config FILE [--dead] [--key K]
                                               make pending (and dead) rows due now

Configuration errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from bridge import config
from bridge.errors import ConfigError, CrmError
from bridge.store import Store

log = logging.getLogger(__name__)

#: Loggers of libraries that log request or response content at DEBUG.
_QUIET = ("hubspot", "simple_salesforce", "urllib3", "requests")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = config.load(args.config)
        return int(args.run(settings, args))
    except ConfigError as error:
        print(f"crm-bridge: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-bridge", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--config", type=Path, required=True, help="TOML settings")
        return sub

    command("serve", "run the service").set_defaults(run=serve)
    command("check", "validate settings and call the CRM once").set_defaults(run=check)
    status_parser = command("status", "show the journal's state")
    status_parser.add_argument("--json", action="store_true", help="machine output")
    status_parser.set_defaults(run=status)
    replay_parser = command("replay", "make pending rows due now")
    replay_parser.add_argument("--dead", action="store_true", help="dead ones too")
    replay_parser.add_argument("--key", help="one key, or 8+ digits of its hash")
    replay_parser.set_defaults(run=replay)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def serve(settings: config.Settings, args: argparse.Namespace) -> int:
    """Run the service until SIGINT or SIGTERM."""
    from bridge.app import create_app

    configure_logging(settings.server.log_level)
    Store.ensure_unlocked(settings.store.path)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.server.host,
            port=settings.server.port,
            log_config=None,
            access_log=settings.server.access_log,
            # Enginy calls directly; no proxy headers to trust.
            proxy_headers=False,
            timeout_graceful_shutdown=int(settings.server.shutdown_grace_seconds),
        )
    )
    server.run()
    return 0 if server.started else 1


def check(settings: config.Settings, args: argparse.Namespace) -> int:
    """Validate the settings, open the journal, make one authenticated CRM call."""
    from bridge.runtime import build_adapter

    configure_logging("warning")
    store = Store(settings.store.path, settings.store.synchronous)
    store.close()
    adapter = build_adapter(settings)
    try:
        adapter.probe()
    except CrmError as error:
        print(
            f"crm-bridge: {adapter.name} check failed: {error.reason}", file=sys.stderr
        )
        return 1
    finally:
        adapter.close()
    print(f"ok: backend={adapter.name} store={settings.store.path}")
    return 0


def status(settings: config.Settings, args: argparse.Namespace) -> int:
    """Counts by state, the oldest pending activity's age, recent dead letters."""
    store = Store(settings.store.path, settings.store.synchronous)
    try:
        counts = store.counts()
        summary = store.summary()
        dead = store.dead_letters(10)
    finally:
        store.close()
    oldest = summary["oldest_pending"]
    age = round(time.time() - oldest, 1) if oldest is not None else None
    letters = [{"key_hash": e.key_hash[:12], "reason": e.reason} for e in dead]
    report = {
        "counts": counts,
        "oldest_pending_seconds": age,
        "in_doubt": summary["in_doubt"],
        "in_doubt_resends": summary["in_doubt_resends"],
        "recent_dead_letters": letters,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for state, count in counts.items():
        print(f"{state:<10} {count}")
    print(f"oldest pending: {'none' if age is None else f'{age} s'}")
    print(f"in doubt: {summary['in_doubt']}")
    print(f"in-doubt resends: {summary['in_doubt_resends']}")
    for letter in letters:
        print(f"dead {letter['key_hash']}  {letter['reason']}")
    return 0


def replay(settings: config.Settings, args: argparse.Namespace) -> int:
    """Make rows due now; a running ``serve`` picks them up at its next pass."""
    store = Store(settings.store.path, settings.store.synchronous)
    max_age = settings.outbox.max_age.total_seconds()
    try:
        with store.transaction():
            count = store.replay(time.time(), max_age, dead=args.dead, key=args.key)
    finally:
        store.close()
    print(f"{count} activities due now")
    return 0 if count or args.key is None else 1


if __name__ == "__main__":
    sys.exit(main())
