"""novactl server console-log / console: a server's serial console."""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Any, TextIO

import grpc

from services.cli import lookup
from services.cli.client import Client
from services.cli.completers import complete
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
    server_id = lookup.server_id(client, args.id)
    if not args.follow:
        request = consoles_pb2.GetConsoleOutputRequest(server_id=server_id, lines=args.lines)
        reply = client.call(stub.GetConsoleOutput, request)
        _write(out, reply.output)
        return 0
    follow = consoles_pb2.FollowConsoleOutputRequest(server_id=server_id, lines=args.lines)
    stream = client.stream(stub.FollowConsoleOutput, follow, args.follow_timeout or None)
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


ESCAPE = b"\x1d"  # Ctrl-], as virsh console


def _requests(server_id: str, inputs: queue.Queue[bytes | None]) -> Iterator[Any]:
    yield consoles_pb2.AttachConsoleRequest(server_id=server_id)
    while (data := inputs.get()) is not None:
        yield consoles_pb2.AttachConsoleRequest(data=data)


def _read_keys(fd: int, inputs: queue.Queue[bytes | None], leave: threading.Event, *,
               on_eof: Any) -> None:  # fmt: skip
    """stdin -> the guest, until Ctrl-] (leave) or end of input (then ``on_eof``)."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b""
        if not data:
            inputs.put(None)
            on_eof()
            return
        before, escape, _ = data.partition(ESCAPE)
        if before:
            inputs.put(before)
        if escape:
            leave.set()
            inputs.put(None)
            return


def _console(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    stub = consoles_pb2_grpc.ConsolesStub(client.channel)
    server_id = lookup.server_id(client, args.id)
    inputs: queue.Queue[bytes | None] = queue.Queue()
    leave = threading.Event()
    call = stub.AttachConsole(_requests(server_id, inputs), metadata=client.metadata)
    fd = sys.stdin.fileno()
    interactive = os.isatty(fd)

    def on_eof() -> None:
        # Piped input ended: let the guest answer the last command, then leave.
        timer = threading.Timer(args.linger, leave.set)
        timer.daemon = True
        timer.start()

    def on_escape() -> None:
        leave.wait()
        call.cancel()

    saved = termios.tcgetattr(fd) if interactive else None
    if interactive:
        sys.stderr.write(f"Connected to server {server_id}. Escape character is ^]\r\n")
        sys.stderr.flush()
        tty.setraw(fd)
    threading.Thread(
        target=_read_keys, args=(fd, inputs, leave), kwargs={"on_eof": on_eof}, daemon=True
    ).start()
    threading.Thread(target=on_escape, daemon=True).start()
    try:
        for chunk in call:
            _write(out, chunk.data)
    except grpc.RpcError as exc:
        if not (leave.is_set() and exc.code() == grpc.StatusCode.CANCELLED):  # type: ignore[attr-defined]
            raise
    finally:
        if saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        with contextlib.suppress(Exception):
            inputs.put(None)
    if interactive:
        sys.stderr.write("\n")
    return 0


def register(server: Any) -> None:
    log = server.add_parser("console-log", help="the last lines of a server's serial console")
    complete(log.add_argument("id", metavar="SERVER", help="name or id"), "server")
    log.add_argument(
        "--lines", type=int, default=0, help="the last N lines, 1..10000 (default: up to 100 KiB)"
    )
    log.add_argument("--follow", action="store_true",
                     help="then print new output as it comes, until Ctrl-C")  # fmt: skip
    log.add_argument("--follow-timeout", type=float, default=0.0,
                     help="with --follow: stop after this many seconds (0: never)")  # fmt: skip
    log.set_defaults(func=_console_log)

    console = server.add_parser(
        "console", help="type into a server's serial console (Ctrl-] leaves, as virsh console)"
    )
    complete(console.add_argument("id", metavar="SERVER", help="name or id"), "server")
    console.add_argument(
        "--linger", type=float, default=2.0, help="piped input: seconds to read after it ends"
    )
    console.set_defaults(func=_console)
