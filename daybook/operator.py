"""Who operator commands run from the command line are, for the audit log."""

from __future__ import annotations

import uuid

from domain.context import CommandContext

CLI_ACTOR = "operator:cli"
"""The audit actor of operator commands run from the command line."""


def cli_context() -> CommandContext:
    """The audit context of one operator command: the CLI actor, a request id of its own."""
    return CommandContext(actor=CLI_ACTOR, request_id=f"cli:{uuid.uuid4()}")
