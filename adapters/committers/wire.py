"""What API processes say to each other's committers: msgspec frames over a stream.

A frame is a 4-byte big-endian length and a MessagePack body. A :class:`Forward`
carries one command (its class name and fields), the partition it was routed to and
the epoch of the owner it was sent to; an :class:`Answer` carries the command's value
and position, the error it raised (class name and constructor arguments, rebuilt on
the sender's side, so the API maps it as if it ran there), or ``moved`` when the
receiver does not own that partition at that epoch (nothing ran).

Only the commands, results and errors listed here cross: a frame names a class, it
never carries code.
"""

from __future__ import annotations

import asyncio
import inspect
import struct
from collections.abc import Callable, Mapping
from typing import Any, Final, get_type_hints

import eventsourcing.persistence
import msgspec
import psycopg

from domain.commands import (
    AdjustStock,
    ApplyGatewayEvent,
    CancelOrder,
    ExpireOrder,
    OncePerKey,
    PlaceOrder,
    ReceiveStock,
)
from domain.errors import DomainError
from domain.groupcommit import (
    CommandOutcome,
    CommitterDatabaseUnavailableError,
    CommitterFailedError,
    GroupCommitError,
)
from domain.unit_of_work import AnyCommand

FRAME_BYTES_MAX: Final = 4 * 1024 * 1024
"""Largest frame read (an order of 100 lines is a few KiB): a longer one ends the connection."""
_LENGTH = struct.Struct(">I")

OK: Final = 0
ERROR: Final = 1
MOVED: Final = 2


class FrameError(Exception):
    """A frame that cannot be read: the connection is closed."""


_NIL: Final = msgspec.Raw(b"\xc0")
"""MessagePack ``nil``: an empty ``Raw`` would encode as nothing and shift the fields after it."""


class Forward(msgspec.Struct, array_like=True, frozen=True):
    """One command for the owner of ``partition`` at ``epoch``."""

    id: int
    partition: int
    epoch: int
    kind: str
    command: msgspec.Raw
    key: str | None = None
    request_sha256: str | None = None


class Answer(msgspec.Struct, array_like=True, frozen=True):
    """The owner's answer to the :class:`Forward` with the same ``id``."""

    id: int
    status: int
    value: msgspec.Raw = _NIL
    position: int | None = None
    error: str | None = None
    error_arguments: dict[str, Any] | None = None


COMMANDS: Final[dict[str, type[Any]]] = {
    cls.__name__: cls for cls in (PlaceOrder, CancelOrder, ExpireOrder, ReceiveStock, AdjustStock, ApplyGatewayEvent)
}
RESULT_TYPES: Final[dict[str, Any]] = {name: get_type_hints(cls.__call__)["return"] for name, cls in COMMANDS.items()}


def _subclasses(base: type[Exception]) -> list[type[Exception]]:
    found = [base]
    for sub in base.__subclasses__():
        found.extend(_subclasses(sub))
    return found


_CONNECTION_ERRORS = (
    psycopg.OperationalError,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
)
"""A committer's database connection failing: the batch saved nothing (answered 503, as in-process)."""


def _errors() -> dict[str, type[Exception]]:
    return {cls.__name__: cls for base in (DomainError, GroupCommitError) for cls in _subclasses(base)}


_encoder = msgspec.msgpack.Encoder()
_forward_decoder = msgspec.msgpack.Decoder(Forward)
_answer_decoder = msgspec.msgpack.Decoder(Answer)


def encode_forward(request_id: int, partition: int, epoch: int, command: AnyCommand) -> bytes:
    """The frame of ``command`` for the owner of ``partition`` at ``epoch``.

    Raises:
        TypeError: a command that does not cross processes (not in :data:`COMMANDS`).
    """
    key = sha256 = None
    inner = command
    if isinstance(command, OncePerKey):
        key, sha256, inner = command.key, command.request_sha256, command.command
    kind = type(inner).__name__
    if COMMANDS.get(kind) is not type(inner):
        msg = f"{kind} is not forwarded between processes"
        raise TypeError(msg)
    body = Forward(request_id, partition, epoch, kind, msgspec.Raw(_encoder.encode(inner)), key, sha256)
    return _frame(_encoder.encode(body))


def decode_forward(body: bytes) -> tuple[Forward, AnyCommand]:
    """The request and the command it carries (rebuilt with its own class).

    Raises:
        msgspec.DecodeError, msgspec.ValidationError, KeyError: not a command frame.
    """
    forward = _forward_decoder.decode(body)
    cls = COMMANDS[forward.kind]
    command: Any = msgspec.msgpack.decode(forward.command, type=cls)
    if isinstance(command, PlaceOrder):  # decoded as a list; the command is immutable
        command = PlaceOrder(**{**_fields(command), "lines": tuple(command.lines)})
    if forward.key is not None and forward.request_sha256 is not None:
        result_type = RESULT_TYPES[forward.kind]
        restore: Callable[[Mapping[str, Any]], Any] = result_type.from_record
        command = OncePerKey(command, forward.key, forward.request_sha256, restore)
    return forward, command


def _fields(command: Any) -> dict[str, Any]:
    return {name: getattr(command, name) for name in command.__dataclass_fields__}


def encode_outcome(request_id: int, outcome: CommandOutcome[Any]) -> bytes:
    """The frame answering a command that committed (or recorded nothing)."""
    return _frame(
        _encoder.encode(Answer(request_id, OK, msgspec.Raw(_encoder.encode(outcome.value)), outcome.position))
    )


def encode_error(request_id: int, error: BaseException) -> bytes:
    """The frame answering a command with the error it raised.

    Errors of the domain and of the group committer cross as their class and
    constructor arguments; anything else as :class:`CommitterFailedError`.
    """
    name = type(error).__name__
    if _errors().get(name) is type(error):
        try:
            arguments = {
                parameter: getattr(error, parameter)
                for parameter in inspect.signature(type(error).__init__).parameters
                if parameter != "self"
            }
            return _frame(_encoder.encode(Answer(request_id, ERROR, error=name, error_arguments=arguments)))
        except (AttributeError, TypeError):  # an error whose arguments are not kept as attributes
            pass
    description = f"{name}: {error}"
    failed = CommitterDatabaseUnavailableError if isinstance(error, _CONNECTION_ERRORS) else CommitterFailedError
    answer = Answer(request_id, ERROR, error=failed.__name__, error_arguments={"description": description})
    return _frame(_encoder.encode(answer))


def encode_moved(request_id: int) -> bytes:
    """The frame saying the receiver does not own the partition (nothing ran)."""
    return _frame(_encoder.encode(Answer(request_id, MOVED)))


def decode_answer(body: bytes) -> Answer:
    """An answer frame's body.

    Raises:
        msgspec.DecodeError, msgspec.ValidationError: not an answer.
    """
    return _answer_decoder.decode(body)


def outcome_of(answer: Answer, kind: str) -> CommandOutcome[Any]:
    """The outcome an ``OK`` answer carries, decoded as the result of command ``kind``."""
    value = msgspec.msgpack.decode(answer.value, type=RESULT_TYPES[kind])
    return CommandOutcome(value, answer.position)


def error_of(answer: Answer) -> Exception:
    """The exception an ``ERROR`` answer carries, rebuilt as its own class."""
    cls = _errors().get(answer.error or "")
    arguments = answer.error_arguments or {}
    if cls is None:
        return CommitterFailedError(f"unknown error {answer.error!r}: {arguments}")
    hints = get_type_hints(cls.__init__)
    try:
        converted = {name: msgspec.convert(value, hints.get(name, Any)) for name, value in arguments.items()}
        return cls(**converted)
    except (TypeError, msgspec.ValidationError) as error:
        return CommitterFailedError(f"{answer.error}({arguments}) could not be rebuilt: {error}")


def kind_of(command: AnyCommand) -> str:
    """The class name a forwarded ``command``'s result is decoded by."""
    inner = command.command if isinstance(command, OncePerKey) else command
    return type(inner).__name__


def _frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's body.

    Raises:
        asyncio.IncompleteReadError: the stream ended.
        FrameError: a frame longer than :data:`FRAME_BYTES_MAX`.
    """
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > FRAME_BYTES_MAX:
        msg = f"frame of {length} bytes (at most {FRAME_BYTES_MAX})"
        raise FrameError(msg)
    return await reader.readexactly(length)
