"""`skydriver`: the command line of SkyDriver — a scan on this machine, the REST API's scans, the alert hook.

    skydriver local-scan [--keep-running | --stop]       whole system here, one scan, then stop (docs/cli.md)
    skydriver scan submit|status|wait|result|find|stop|rescan ...
    skydriver alert-hook [FILE... | --watch DIR]

Every failure is one line on stderr and an exit code (`errors.Exit`), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .alerts import add_alert_parser
from .api import SkyDriverAPI, connection_from
from .errors import CliError
from .local_scan import add_local_parser
from .scan_cmd import add_scan_parser

__all__ = ["main"]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="skydriver", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_local_parser(commands)
    add_scan_parser(commands)
    add_alert_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if hasattr(args, "local"):
            return int(args.local(args))
        return asyncio.run(_remote(args))
    except CliError as exc:
        print(f"skydriver: {exc.message}", file=sys.stderr)
        return int(exc.code)
    except KeyboardInterrupt:
        return 130


async def _remote(args: argparse.Namespace) -> int:
    async with SkyDriverAPI(connection_from(args), timeout=args.timeout) as api:
        return int(await args.run(api, args))


if __name__ == "__main__":
    sys.exit(main())
