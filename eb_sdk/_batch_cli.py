"""``eb map``, ``eb batches`` and ``eb batch ...``: batches from the shell (see docs/batch.md).

Exit codes follow the ``eb`` command's: 0 every run COMPLETED, 1 some run FAILED or was
CANCELLED, 2 usage, 3 nobody offers to run it, 4 no such batch, 7 ``--timeout`` passed (the
batch goes on: ``eb batch wait ID`` follows it again).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._errors import Conflict, InvalidRequest, Timeout
from ._format import text_table
from .batch import AsyncBatch, BatchList, _error_text, amap, batches
from .builders import Compute

__all__ = ["add_parsers"]

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 7


def _inputs(args: argparse.Namespace) -> list[str]:
    """The inputs: every file matching each ``--inputs`` pattern (sorted, absolute, since the
    notebook runs in its own directory), then the lines of ``--inputs-from``."""
    found: list[str] = []
    for pattern in args.inputs or []:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise InvalidRequest(f"--inputs {pattern!r} matches no file")
        found += [os.path.abspath(m) for m in matches]
    if args.inputs_from:
        try:
            text = Path(args.inputs_from).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidRequest(f"cannot read {args.inputs_from}: {exc.strerror}") from None
        found += [line.strip() for line in text.splitlines() if line.strip()]
    if not found:
        raise InvalidRequest("give the inputs: --inputs 'data/*.fits' or --inputs-from list.txt")
    return found


def _summary_text(batch: AsyncBatch) -> str:
    counts = batch.status()
    lines = [
        f"batch {batch.id} ({len(batch)} runs): "
        + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    ]
    failed = batch.failed()
    if failed:
        rows = [
            [str(r.index), str(r.input), _error_text(r.error), str(r.output or "—")] for r in failed
        ]
        lines += ["", text_table(["#", "input", "error", "output"], rows)]
        lines += ["", f"retry them with: eb batch retry {batch.id}"]
    if batch.error:
        lines.append(f"error: {batch.error}")
    return "\n".join(lines)


def _report(batch: AsyncBatch, as_json: bool, runs: bool = False) -> int:
    data = batch.summary()
    if runs:
        data["runs"] = [r.to_dict() for r in batch.runs]
    print(json.dumps(data, indent=2, default=str) if as_json else _summary_text(batch))
    counts = batch.status()
    if not batch.done:
        return EXIT_OK
    return EXIT_OK if counts["COMPLETED"] == len(batch) else EXIT_ERROR


async def _follow(batch: AsyncBatch, args: argparse.Namespace) -> int:
    progress = not args.json and not args.no_progress
    try:
        await batch.wait(args.timeout, progress=progress, file=sys.stderr)
    except Timeout as exc:
        print(f"eb: {exc}; follow it again with: eb batch wait {batch.id}", file=sys.stderr)
        _report(batch, args.json)
        return EXIT_TIMEOUT
    finally:
        await batch.stop()
    return _report(batch, args.json)


async def cmd_map(args: argparse.Namespace) -> int:
    from .cli import _parameters  # the -p NAME=VALUE reader of ``eb request``

    compute = None
    if args.cores is not None or args.memory is not None:
        compute = Compute(cores=args.cores, memory=args.memory)
    batch = await amap(
        args.notebook,
        _inputs(args),
        args.parameter,
        _parameters(args.param) or None,
        compute=compute,
        start=args.start,
        duration=args.duration,
        per_input=args.per_input,
        brokers=list(args.broker) if args.broker else None,
        max_parallel=args.max_parallel,
        chunk_size=args.chunk_size,
        name=args.name,
        output_dir=args.output_dir,
    )
    print(f"batch {batch.id}: {len(batch)} runs", file=sys.stderr)
    return await _follow(batch, args)


async def cmd_batches(args: argparse.Namespace) -> int:
    found: BatchList = batches()
    print(json.dumps(list(found), indent=2, default=str) if args.json else str(found))
    return EXIT_OK


async def _look(ref: str) -> AsyncBatch:
    """A batch as its brokers see it now, followed once (unless another process follows it:
    then as that process last saved it). Nothing is placed."""
    batch = AsyncBatch.look(ref)
    engine = batch._engine
    try:
        engine.lock.acquire()
    except Conflict as exc:
        print(f"eb: note: {exc}", file=sys.stderr)
        return batch
    try:
        if engine.in_flight():
            await engine.follow()
            engine.save(now=True)
    finally:
        engine.lock.release()
    return batch


async def cmd_batch_show(args: argparse.Namespace) -> int:
    return _report(await _look(args.batch), args.json, runs=args.runs)


async def cmd_batch_wait(args: argparse.Namespace) -> int:
    return await _follow(await AsyncBatch.load(args.batch), args)


async def cmd_batch_retry(args: argparse.Namespace) -> int:
    batch = await AsyncBatch.load(args.batch)
    options: dict[str, Any] = {}
    if args.start:
        options["start"] = args.start
    await batch.retry(failed_only=not args.all, **options)
    return await _follow(batch, args)


async def cmd_batch_cancel(args: argparse.Namespace) -> int:
    batch = await AsyncBatch.load(args.batch)
    await batch.cancel()
    return await _follow(batch, args)


def _following(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=None, help="stop following after SECONDS")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``map``, ``batches`` and ``batch`` to the ``eb`` command's sub-parsers."""
    p = sub.add_parser(
        "map", parents=[common], help="run a notebook once per input (a batch), with progress"
    )
    p.add_argument("notebook", help="the notebook (.ipynb)")
    p.add_argument(
        "--inputs",
        action="append",
        metavar="GLOB",
        help="input files (a glob, e.g. 'data/*.fits'; repeatable)",
    )
    p.add_argument("--inputs-from", metavar="FILE", help="inputs, one per line")
    p.add_argument("--parameter", default="input_file", help="the parameter each input goes to")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--chunk-size", type=int, help="inputs per session (default: automatic, 10-100)")
    p.add_argument("--max-parallel", type=int, help="sessions at once (default: no limit)")
    p.add_argument("--start", help='when the batch may start: "sometime in the next 24 hours"')
    p.add_argument("--per-input", help="time one input may take on one core (default 1 min)")
    p.add_argument("--duration", help="book each session this long (default: from --per-input)")
    p.add_argument("--cores", help="cores per session: 1 or 1-4")
    p.add_argument("--memory", help="memory per session: 2GiB")
    p.add_argument("--name", help="a name for the batch")
    p.add_argument("--output-dir", help="where the brokers write the output notebooks")
    _following(p)
    p.set_defaults(run=cmd_map)

    p = sub.add_parser("batches", parents=[common], help="the saved batches")
    p.set_defaults(run=cmd_batches)

    p = sub.add_parser("batch", help="one saved batch: show, wait, retry, cancel")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("show", parents=[common], help="its runs per phase and failures")
    q.add_argument("batch", help="the batch id (eb batches)")
    q.add_argument("--runs", action="store_true", help="every run (with --json)")
    q.set_defaults(run=cmd_batch_show)
    q = actions.add_parser("wait", parents=[common], help="follow it until every run ended")
    q.add_argument("batch")
    _following(q)
    q.set_defaults(run=cmd_batch_wait)
    q = actions.add_parser("retry", parents=[common], help="run the failed runs again")
    q.add_argument("batch")
    q.add_argument("--all", action="store_true", help="also the cancelled runs")
    q.add_argument("--start", help="when the retried runs may start")
    _following(q)
    q.set_defaults(run=cmd_batch_retry)
    q = actions.add_parser("cancel", parents=[common], help="cancel what has not finished")
    q.add_argument("batch")
    _following(q)
    q.set_defaults(run=cmd_batch_cancel)
