"""Group commit: many concurrent commands, one event-store transaction per batch.

See DESIGN.md, "The central mechanism: group commit".
"""

from domain.groupcommit.batch import BatchReport, CommandOutcome, run_batch
from domain.groupcommit.batch_unit_of_work import BatchUnitOfWork
from domain.groupcommit.cache import AggregateCache
from domain.groupcommit.committer import BatchObserver, GroupCommitMetrics, GroupCommitter
from domain.groupcommit.errors import (
    CommitOutcomeUnknownError,
    CommitterDatabaseUnavailableError,
    CommitterFailedError,
    CommitterUnavailableError,
    ConflictRetriesExhaustedError,
    GroupCommitError,
    GroupCommitterStoppedError,
    OverloadedError,
)
from domain.unit_of_work import DuplicateAggregateError

__all__ = [
    "AggregateCache",
    "BatchObserver",
    "BatchReport",
    "BatchUnitOfWork",
    "CommandOutcome",
    "CommitOutcomeUnknownError",
    "CommitterDatabaseUnavailableError",
    "CommitterFailedError",
    "CommitterUnavailableError",
    "ConflictRetriesExhaustedError",
    "DuplicateAggregateError",
    "GroupCommitError",
    "GroupCommitMetrics",
    "GroupCommitter",
    "GroupCommitterStoppedError",
    "OverloadedError",
    "run_batch",
]
