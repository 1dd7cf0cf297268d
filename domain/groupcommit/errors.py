"""Errors of the group-commit batcher; the API maps them to problem responses."""

from __future__ import annotations

from typing import ClassVar


class GroupCommitError(Exception):
    """Base class of the errors raised by the group-commit batcher itself.

    Attributes:
        code: the contract's problem code for the caller.
    """

    code: ClassVar[str] = "unavailable"


class OverloadedError(GroupCommitError):
    """The queue, or the merchant's share of it, is full: the command was not accepted.

    Nothing ran. The caller may retry later (the API answers 503 ``overloaded`` with
    ``Retry-After``).

    Attributes:
        queue_size_max: the bound that was reached.
        merchant: whether it was the merchant's own share (others may still queue).
    """

    code = "overloaded"

    def __init__(self, name: str, queue_size_max: int, *, merchant: bool = False) -> None:
        whose = "this merchant's share of " if merchant else ""
        super().__init__(f"{whose}group committer {name!r} is overloaded ({queue_size_max} queued)")
        self.name = name
        self.queue_size_max = queue_size_max
        self.merchant = merchant


class GroupCommitterStoppedError(GroupCommitError):
    """The committer is not running, or stopped before the command ran.

    Nothing of the command was committed.
    """


class CommitOutcomeUnknownError(GroupCommitError):
    """``stop`` timed out while the command's batch was being saved.

    The batch may or may not have been committed; a retry must be idempotent.
    """

    code = "commit_outcome_unknown"


class ConflictRetriesExhaustedError(GroupCommitError):
    """Other writers kept changing the batch's aggregates; nothing was committed."""

    code = "write_contention"

    def __init__(self, attempts: int) -> None:
        super().__init__(f"version conflict on every one of {attempts} attempts")
        self.attempts = attempts


class CommitterUnavailableError(GroupCommitError):
    """No committer of the command's partition could be reached in time; nothing was applied.

    Several processes share the partitions (``adapters/committers``): the owner was
    being replaced for longer than the forwarding deadline. A retry may succeed.
    """

    def __init__(self, partition: int, seconds: float) -> None:
        super().__init__(f"no committer took partition {partition} within {seconds:.1f}s")
        self.partition = partition
        self.seconds = seconds


class CommitterDatabaseUnavailableError(GroupCommitError):
    """The committer that ran a forwarded command lost its database connection; nothing was applied.

    The same failure in this process is answered 503 (``api/problems.py``): a batch that
    fails on its connection saves nothing (a lost commit acknowledgement is told apart by
    the event store), so a retry may succeed.
    """

    code = "unavailable"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class CommitterFailedError(GroupCommitError):
    """The committer that ran a forwarded command failed it with an unexpected error.

    Answered like the same failure in this process (500): the command's batch was not
    committed, as a batch that fails for any reason but a version conflict or a lost
    commit acknowledgement saves nothing.
    """

    code = "internal_error"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description
