"""The audit bounded context: the hash chain over a merchant's events, its signed digests,
and each merchant's log of operator and security actions.

The chain (``chain.py``) is pure computation (no SQL, no I/O): its definition, which
outside auditors recompute, and an incremental verifier shared by the API, the CLI and
the tests. The log (``log.py``) is an aggregate whose events the chain covers like any
other of the merchant's.
"""

from domain.audit.chain import (
    GENESIS_HASH,
    HASH_FIELDS,
    ChainVerifier,
    Mismatch,
    canonical_json,
    chain_hash,
    digest_message,
    event_body,
)
from domain.audit.log import (
    OPERATOR_ID,
    AuditLog,
    ExistingMerchant,
    ParkedRow,
    audit_log_id,
)

__all__ = [
    "GENESIS_HASH",
    "HASH_FIELDS",
    "OPERATOR_ID",
    "AuditLog",
    "ChainVerifier",
    "ExistingMerchant",
    "Mismatch",
    "ParkedRow",
    "audit_log_id",
    "canonical_json",
    "chain_hash",
    "digest_message",
    "event_body",
]
