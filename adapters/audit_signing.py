"""The audit digests' Ed25519 key, kept outside the database, and the digests' signature check.

The key is generated on first use into ``DAYBOOK_AUDIT_SIGNING_KEY_PATH`` (default
``<DAYBOOK_HOME>/audit-signing-key.pem``), PKCS #8 PEM, mode 600, linked into place
whole, so two processes starting at once agree on one key. The public key is published with every
digest: ``signature`` and ``public_key`` are lower-case hex of the raw 64 and 32 bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.audit import digest_message

KEY_FILE: Final = "audit-signing-key.pem"


class SigningKeyError(RuntimeError):
    """The signing key file exists but holds no Ed25519 private key."""


def signing_key_path(home: Path, configured: str | None) -> Path:
    """Where the signing key is kept: the configured path, else under ``home``."""
    return Path(configured) if configured else home / KEY_FILE


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``, generated there (mode 600) if there is none yet.

    Raises:
        SigningKeyError: the file holds something else.
    """
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then linked into place: a process starting at
        # the same moment finds no file or a whole one, never a half-written key.
        draft = path.with_name(f".{path.name}.{os.getpid()}.draft")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: use that one
        else:
            return key
        finally:
            draft.unlink(missing_ok=True)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 private key")
    return loaded


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32 bytes of ``key``'s public key."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_digest(key: Ed25519PrivateKey, merchant_id: str, position: int, hash_hex: str) -> bytes:
    """The raw 64-byte signature of a digest."""
    return key.sign(digest_message(merchant_id, position, hash_hex))


def signature_holds(public_key_hex: str, signature_hex: str, merchant_id: str, position: int, hash_hex: str) -> bool:
    """Whether ``signature_hex`` is ``public_key_hex``'s signature of the digest (malformed hex is not)."""
    try:
        public_key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        public_key.verify(bytes.fromhex(signature_hex), digest_message(merchant_id, position, hash_hex))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
