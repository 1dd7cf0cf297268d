"""The audit bounded context: each merchant's log of operator and security actions."""

from domain.audit.log import (
    OPERATOR_ID,
    AuditLog,
    ParkedRow,
    audit_log_id,
)

__all__ = ["OPERATOR_ID", "AuditLog", "ParkedRow", "audit_log_id"]
