"""novactl server console-log / console: a server's serial console."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

import grpc

from services.cli.client import Client
from services.common.generated.novagrpc.v1 import consoles_pb2, consoles_pb2_grpc


def _write(out: TextIO, data: bytes) -> None:
    """Raw bytes to a real stream (the guest's output is not necessarily UTF-8); text to any
    other."""
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8", errors="replace"))
        out.flush()


def _console_log(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = consoles_pb2_grpc.ConsolesStub(client.channel)
    request = consoles_pb2.GetConsoleOutputRequest(server_id=args.id, lines=args.lines)
    if not args.follow:
        reply = client.call(stub.GetConsoleOutput, request)
        _write(out, reply.output)
        return 0
    stream = client.stream(stub.FollowConsoleOutput, request, args.follow_timeout or None)
    try:
        for chunk in stream:
            _write(out, chunk.output)
    except KeyboardInterrupt:
        return 0
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            return 0  # --follow-timeout passed: the output so far is what was asked for
        raise
    finally:
        stream.cancel()
    return 0


def register(server: Any) -> None:
    log = server.add_parser("console-log", help="the last lines of a server's serial console")
    log.add_argument("id")
    log.add_argument(
        "--lines", type=int, default=0, help="the last N lines, 1..10000 (default: up to 100 KiB)"
    )
    log.add_argument("--follow", "-f", action="store_true",
                     help="then print new output as it comes, until Ctrl-C")  # fmt: skip
    log.add_argument("--follow-timeout", type=float, default=0.0,
                     help="with --follow: stop after this many seconds (0: never)")  # fmt: skip
    log.set_defaults(func=_console_log)
