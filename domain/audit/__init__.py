"""The audit bounded context: the hash chain over a merchant's events and its signed digests.

Pure computation (no SQL, no I/O): the chain's definition, which outside auditors
recompute, and an incremental verifier shared by the API, the CLI and the tests.
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

__all__ = [
    "GENESIS_HASH",
    "HASH_FIELDS",
    "ChainVerifier",
    "Mismatch",
    "canonical_json",
    "chain_hash",
    "digest_message",
    "event_body",
]
