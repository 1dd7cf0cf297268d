"""Who asked for a command, recorded on every event it produces (the audit metadata)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class CommandContext:
    """The actor and request behind a command.

    Attributes:
        actor: who asked: ``"api_key:<key id>"``, ``"gateway:<name>"``, ``"system:<job>"``.
        request_id: the HTTP request id, or a job/run id for background work.
        causation_id: what caused this command, if anything (a gateway event id, an
            inbox row id, the order whose payment triggered a stock commit).
        occurred_at: when the command ran: every event it records carries this one
            timestamp, so the aggregates it touched agree on the instant (``as_of``
            reads see all of a command or none of it). Set by :meth:`stamped`.
    """

    actor: str
    request_id: str
    causation_id: str | None = None
    occurred_at: datetime | None = None

    @property
    def instant(self) -> datetime:
        """``occurred_at`` of a stamped context (a programming error otherwise)."""
        assert self.occurred_at is not None, "a command stamps its context before it records"
        return self.occurred_at

    def stamped(self) -> CommandContext:
        """This context at the current instant (commands call it once as they start).

        A context already stamped keeps its instant: a command run by another one
        (:class:`domain.commands.once.OncePerKey`) records at the same instant.
        """
        if self.occurred_at is not None:
            return self
        # Built directly: dataclasses.replace costs several times more (once per command).
        return CommandContext(self.actor, self.request_id, self.causation_id, datetime.now(UTC))

    def metadata(self) -> dict[str, str]:
        """The event metadata dict stored on every event this command triggers."""
        data = {"actor": self.actor, "request_id": self.request_id}
        if self.causation_id is not None:
            data["causation_id"] = self.causation_id
        return data
