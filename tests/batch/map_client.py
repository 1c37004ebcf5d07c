"""A client process for the resume test: ``python -m tests.batch.map_client JSON``.

It starts a batch with ``eb.map``, prints its id and waits for it — until the test kills it
with SIGKILL half way.
"""

from __future__ import annotations

import json
import sys

import eb_sdk as eb


def main() -> None:
    args = json.loads(sys.argv[1])
    batch = eb.map(
        args["notebook"],
        args["inputs"],
        parameters=args["parameters"],
        brokers=eb.Broker(args["url"], name="local", token=args["token"]),
        chunk_size=args["chunk_size"],
    )
    print(batch.id, flush=True)
    batch.wait(progress=False)
    print("done", flush=True)


if __name__ == "__main__":
    main()
