"""The ``eb`` command: the notebook API for terminals and scripts.

Every command takes ``--json`` (machine-readable output on stdout) and ``--broker`` (repeat it
to name several; default: the configured brokers). Errors are one line on stderr, never a
traceback (``EB_DEBUG=1`` shows one), and the exit code says what happened:

====  =====================================================================
0     success
1     error (a broker failed, a session FAILED, anything else)
2     usage: bad arguments, a "when" phrase or size we cannot read, config
3     no offers: every broker answered NO (or ``direct`` found no slot)
4     not found: no broker knows that offer or session
5     authentication: the broker refused our credentials
6     conflict: the offer expired, was taken, or the phase does not allow it
7     timeout: ``eb wait`` gave up
====  =====================================================================

``eb map`` and ``eb batch ...`` exit 1 when some run of the batch FAILED (docs/batch.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from . import aio
from ._batch_cli import add_parsers as add_batch_parsers
from ._errors import EBError, InvalidRequest, SessionFailed
from ._format import text_table
from ._version import __version__
from .builders import Compute, Container, Interactivity, Notebook
from .model import ExecutionRequest, parse_body
from .offers import COLUMNS, AsyncOffers
from .sessions import AsyncSession, phases_of

__all__ = ["main", "one_line", "parser"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NO_OFFERS = 0, 1, 2, 3
EXIT_NOT_FOUND, EXIT_AUTH, EXIT_CONFLICT, EXIT_TIMEOUT = 4, 5, 6, 7


class Usage(Exception):
    """A usage error found after argparse (exit 2)."""


def _out(data: Any, as_json: bool, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else text)


def _warn(text: str) -> None:
    print(f"eb: warning: {text}", file=sys.stderr)


def _brokers(args: argparse.Namespace) -> list[str] | None:
    return list(args.broker) if args.broker else None


# -- commands ----------------------------------------------------------------------------------


async def cmd_brokers(args: argparse.Namespace) -> int:
    found = await aio.brokers(_brokers(args), timeout=args.timeout)
    data = [
        {k: v for k, v in vars(b).items() if k != "health"} | {"health": b.health} for b in found
    ]
    _out(data, args.json, str(found))
    return EXIT_OK if all(b.ok for b in found) else EXIT_ERROR


def _parameters(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise Usage(f"--param wants NAME=VALUE, not {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _request_base(args: argparse.Namespace) -> Any:
    given = [x for x in (args.notebook, args.image, args.file) if x]
    if len(given) != 1:
        raise Usage("say what to run: a NOTEBOOK, --image IMAGE or --file request.yaml")
    if args.file:
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Usage(f"cannot read {path}: {exc.strerror}") from None
        kind = "application/json" if path.suffix == ".json" else "application/yaml"
        try:
            data = parse_body(text, kind)
            return ExecutionRequest.model_validate(data)
        except ValueError as exc:
            raise InvalidRequest(f"{path}: {exc}") from None
    if args.image:
        command = shlex.split(args.command) if args.command else None
        return Container(args.image, command=command)
    return Notebook(args.notebook, _parameters(args.param) or None)


def _compute(args: argparse.Namespace) -> Any:
    if args.gpu_model and args.gpus is None:
        raise Usage(f"--gpu-model {args.gpu_model} needs --gpus N (how many GPUs of that model)")
    if args.cores is None and args.memory is None and args.gpus is None:
        return None
    return Compute(
        cores=args.cores,
        memory=args.memory,
        gpus=args.gpus,
        gpu_model=args.gpu_model,
    )


def _interactivity(args: argparse.Namespace) -> Any:
    if args.bandwidth is None and args.latency is None:
        return None
    return Interactivity(bandwidth=args.bandwidth, latency=args.latency)


def _offers_table(offers: AsyncOffers) -> str:
    rows = [[o.uuid, *row[1:]] for o, row in zip(offers, offers.rows(), strict=True)]
    return text_table(["offer", *COLUMNS[1:]], rows)


async def cmd_request(args: argparse.Namespace) -> int:
    offers = await aio.request(
        _request_base(args),
        compute=_compute(args),
        duration=args.duration,
        start=args.start,
        name=args.name,
        interactivity=_interactivity(args),
        brokers=_brokers(args),
        timeout=args.timeout,
    )
    for warning in offers.warnings:
        _warn(str(warning))
    reasons = [{"broker": b, **m.dump()} for b, m in offers.reasons]
    data = {
        "offers": offers.to_list(),
        "warnings": [str(w) for w in offers.warnings],
        "reasons": reasons,
    }
    if offers:
        text = _offers_table(offers) + "\n\naccept one with: eb accept OFFER"
    else:
        text = "no offers\n" + "\n".join(f"  {b}: {m}" for b, m in offers.reasons)
    _out(data, args.json, text)
    return EXIT_OK if offers else EXIT_NO_OFFERS


async def cmd_accept(args: argparse.Namespace) -> int:
    offer = await aio.find_offer(args.offer, brokers=_brokers(args))
    session = await offer.accept(reject_others=False)
    _out(session.to_dict(), args.json, str(session))
    return EXIT_OK


async def cmd_reject(args: argparse.Namespace) -> int:
    offer = await aio.find_offer(args.offer, brokers=_brokers(args))
    await offer.reject()
    _out(offer.to_dict(), args.json, f"rejected {offer.uuid} on {offer.broker_name}")
    return EXIT_OK


async def cmd_sessions(args: argparse.Namespace) -> int:
    phases = [p for p in args.phase.split(",") if p.strip()] if args.phase else None
    if phases:
        try:
            phases_of(phases)
        except ValueError:
            raise Usage(f"unknown phase in {args.phase!r}") from None
    found = await aio.sessions(phases, brokers=_brokers(args), timeout=args.timeout)
    for warning in found.warnings:
        _warn(str(warning))
    _out([s.to_dict() for s in found], args.json, str(found))
    return EXIT_OK


async def cmd_show(args: argparse.Namespace) -> int:
    session = await aio.session(args.session, brokers=_brokers(args))
    _out(session.to_dict(), args.json, str(session))
    return EXIT_OK


async def cmd_wait(args: argparse.Namespace) -> int:
    targets: list[str] | None = None
    if args.phases:
        targets = [p for p in args.phases.split(",") if p.strip()]
        try:
            phases_of(targets)
        except ValueError:
            raise Usage(f"unknown phase in {args.phases!r}") from None
    session = await aio.session(args.session, brokers=_brokers(args))
    await session.wait(targets, timeout=args.timeout)
    _out(session.to_dict(), args.json, str(session))
    session.raise_if_failed()
    if targets and session.phase not in phases_of(targets):
        raise SessionFailed(
            f"session {session.uuid[:8]} ended {session.phase.value} before reaching "
            f"{', '.join(targets)}",
            broker=session.broker_name,
        )
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace) -> int:
    session: AsyncSession = await aio.session(args.session, brokers=_brokers(args))
    await session.cancel()
    _out(session.to_dict(), args.json, str(session))
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------


def _deadline(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the brokers")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "-b",
        "--broker",
        action="append",
        metavar="NAME|URL",
        help="a broker (name=url, URL or configured name); repeat for several",
    )
    main = argparse.ArgumentParser(
        prog="eb",
        description="Ask 'when, and where, can I run this?' of IVOA Execution Brokers.",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 no offers, 4 not found, "
        "5 authentication, 6 conflict/expired, 7 timeout",
    )
    main.add_argument("--version", action="version", version=f"eb {__version__}")
    sub = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("brokers", parents=[common], help="the configured brokers and health")
    _deadline(p)
    p.set_defaults(run=cmd_brokers)

    p = sub.add_parser("request", parents=[common], help="ask every broker for offers")
    p.add_argument("notebook", nargs="?", help="a notebook to run (.ipynb)")
    p.add_argument("--image", help="a container image to run instead")
    p.add_argument("--command", help="the container's command (one string, shell-quoted)")
    p.add_argument("--file", help="a whole ExecutionRequest (YAML or JSON)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--cores", help="cores: 4 or 1-4")
    p.add_argument("--memory", help="memory: 8GiB or 2-8GiB")
    p.add_argument("--gpus", help="GPUs: 1 or 1-2")
    p.add_argument("--gpu-model", help="GPU model, e.g. A100 (with --gpus)")
    p.add_argument("--bandwidth", help="network to you, at least: 100 (Mbit/s) or '1 Gbit/s'")
    p.add_argument("--latency", help="round trip to you, at most: 30 (ms) or '0.05 s'")
    p.add_argument("--duration", help="how long: 2h, 90 min, PT2H")
    p.add_argument("--start", help='when: "now", "within 10 min", "this afternoon"')
    p.add_argument("--name", help="a name for the session")
    _deadline(p)
    p.set_defaults(run=cmd_request)

    p = sub.add_parser("accept", parents=[common], help="accept an offer (uuid or URL)")
    p.add_argument("offer")
    p.set_defaults(run=cmd_accept)

    p = sub.add_parser("reject", parents=[common], help="reject an offer (uuid or URL)")
    p.add_argument("offer")
    p.set_defaults(run=cmd_reject)

    p = sub.add_parser("sessions", parents=[common], help="my sessions on every broker")
    p.add_argument("--phase", help="only these phases, e.g. RUNNING,WAITING")
    _deadline(p)
    p.set_defaults(run=cmd_sessions)

    p = sub.add_parser("show", parents=[common], help="one session (uuid or URL)")
    p.add_argument("session")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("wait", parents=[common], help="wait for a session's phase")
    p.add_argument("session")
    p.add_argument("--for", dest="phases", help="phases to wait for (default: it ends)")
    p.add_argument("--timeout", type=float, default=None, help="give up after SECONDS (exit 7)")
    p.set_defaults(run=cmd_wait)

    p = sub.add_parser("cancel", parents=[common], help="cancel a session (uuid or URL)")
    p.add_argument("session")
    p.set_defaults(run=cmd_cancel)

    add_batch_parsers(sub, common)  # eb map, eb batches, eb batch show/wait/retry/cancel
    return main


def one_line(error: BaseException) -> str:
    """An error as one line: multi-line messages (lists of examples) are joined."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    head, items = lines[0], [line.lstrip("-• ").strip() for line in lines[1:]]
    return f"{head} {'; '.join(items)}" if items else head


async def _run(args: argparse.Namespace) -> int:
    try:
        code: int = await args.run(args)
        return code
    finally:
        await aio.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``eb``: returns (and exits with) the documented exit code."""
    args = parser().parse_args(argv)
    try:
        code = asyncio.run(_run(args))
    except Usage as exc:
        print(f"eb: error: {exc}", file=sys.stderr)
        code = EXIT_USAGE
    except EBError as exc:
        print(f"eb: error: {one_line(exc)}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("eb: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # a bug: still one line unless asked for the traceback
        if os.environ.get("EB_DEBUG"):
            raise
        print(f"eb: internal error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        code = EXIT_ERROR
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
