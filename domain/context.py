"""Who asked for a command, recorded on every event it produces (the audit metadata)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandContext:
    """The actor and request behind a command.

    Attributes:
        actor: who asked: ``"api_key:<key id>"``, ``"gateway:<name>"``, ``"system:<job>"``.
        request_id: the HTTP request id, or a job/run id for background work.
        causation_id: what caused this command, if anything (a gateway event id, an
            inbox row id, the order whose payment triggered a stock commit).
    """

    actor: str
    request_id: str
    causation_id: str | None = None

    def metadata(self) -> dict[str, str]:
        """The event metadata dict stored on every event this command triggers."""
        data = {"actor": self.actor, "request_id": self.request_id}
        if self.causation_id is not None:
            data["causation_id"] = self.causation_id
        return data
