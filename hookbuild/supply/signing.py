"""Signing keys and DSSE envelopes: ed25519 or ECDSA P-256 keys from PEM files, signatures over the PAE.

DSSE (secure-systems-lab/dsse) signs `PAE(type, payload)`, never the payload alone, so a signature cannot
be replayed under another payload type. The envelope's `keyid` is the SHA-256 of the public key's DER
SubjectPublicKeyInfo; it names the key, the signature decides. A private key's password comes only from
HOOKBUILD_SIGNING_KEY_PASSWORD (registered as a secret, never inherited by processes we start).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hookbuild import secrets
from hookbuild.errors import SigningError, UsageError, VerifyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    from hookbuild.config import Settings

    PrivateKey = Ed25519PrivateKey | EllipticCurvePrivateKey
    PublicKey = Ed25519PublicKey | EllipticCurvePublicKey

PASSWORD_ENV = "HOOKBUILD_SIGNING_KEY_PASSWORD"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
_KEY_HINT = "make one with `openssl genpkey -algorithm ed25519 -out KEY.pem` (or EC P-256), chmod 600"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(payload) SP payload."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True, kw_only=True)
class Verifier:
    """A key that checks signatures, with the id and PEM that `verify --json` shows."""

    key: PublicKey
    key_id: str
    pem: str

    def verify(self, signature: bytes, message: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            else:
                self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, kw_only=True)
class Signer:
    key: PrivateKey
    public: Verifier

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(message, ec.ECDSA(hashes.SHA256()))
        return self.key.sign(message)


def _public(key: PublicKey) -> Verifier:
    from cryptography.hazmat.primitives import serialization

    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Verifier(key=key, key_id=f"sha256:{hashlib.sha256(der).hexdigest()}", pem=pem.decode())


def _check_type(key: object, path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return
    raise UsageError(
        f"{path} holds a {type(key).__name__}, not an ed25519 or ECDSA P-256 key", hint=_KEY_HINT
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist", hint=_KEY_HINT) from None
    except OSError as exc:
        raise UsageError(
            f"cannot read {what} {path}: {exc.strerror}", hint="check the path and its mode"
        ) from None


def load_signer(path: Path, *, env: Mapping[str, str] | None = None) -> Signer:
    """The private key named by the signing_key setting; refused if others can read it."""
    from cryptography.hazmat.primitives import serialization

    data = _read(path, "signing key")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(
            f"signing key {path} is readable by others (mode {stat.S_IMODE(mode):o})",
            hint=f"chmod 600 {path}",
        )
    password = (os.environ if env is None else env).get(PASSWORD_ENV) or None
    secrets.register(password)
    try:
        key = serialization.load_pem_private_key(data, password=password.encode() if password else None)
    except TypeError:
        hint = (
            f"set {PASSWORD_ENV}" if password is None else f"unset {PASSWORD_ENV}: the key is not encrypted"
        )
        raise UsageError(f"signing key {path}: {_password_problem(password)}", hint=hint) from None
    except ValueError:
        raise UsageError(
            f"signing key {path} is not a PEM private key, or {PASSWORD_ENV} is not its password",
            hint=_KEY_HINT,
        ) from None
    _check_type(key, path)
    return Signer(key=key, public=_public(key.public_key()))  # type: ignore[arg-type]


def _password_problem(password: str | None) -> str:
    return (
        "it is encrypted and no password is set"
        if password is None
        else "a password is set but it is not encrypted"
    )


def load_public_key(path: Path, *, env: Mapping[str, str] | None = None) -> Verifier:
    """A public key PEM, or the public half of a private key PEM (the signing key itself)."""
    from cryptography.hazmat.primitives import serialization

    data = _read(path, "key")
    if b"PRIVATE KEY" in data:
        return load_signer(path, env=env).public
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise UsageError(
            f"{path} is not a PEM public key", hint="pass the signing key's public half"
        ) from None
    _check_type(key, path)
    return _public(key)  # type: ignore[arg-type]


def verify_key(path: Path | None, settings: Settings) -> Verifier:
    """The key `verify` checks with: given, else the verify_key setting, else the signing key's public half."""
    chosen = path or settings.verify_key or settings.signing_key
    if chosen is None:
        raise UsageError(
            "no key to verify with",
            hint="pass --key PUBLIC.pem, or set verify_key (HOOKBUILD_VERIFY_KEY) or signing_key",
        )
    return load_public_key(chosen)


def sign_envelope(signer: Signer, payload: bytes, payload_type: str = IN_TOTO_PAYLOAD) -> bytes:
    """A DSSE envelope (JSON) holding `payload` and one signature over its PAE."""
    try:
        signature = signer.sign(pae(payload_type, payload))
    except Exception as exc:  # the cryptography backend's own errors carry no type of their own
        raise SigningError(
            f"signing with key {signer.key_id} failed: {exc}", hint="check the key file"
        ) from exc
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": signer.key_id, "sig": base64.b64encode(signature).decode()}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def open_envelope(data: bytes, key: Verifier, *, where: str) -> tuple[str, bytes]:
    """The payload type and payload of an envelope, if one of its signatures checks with `key`."""
    try:
        envelope: Any = json.loads(data)
        payload_type = str(envelope["payloadType"])
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise VerifyError(f"{where} is not a DSSE envelope", hint="re-release, or promote it again") from None
    message = pae(payload_type, payload)
    if not any(key.verify(signature, message) for signature in signatures):
        raise VerifyError(
            f"{where}: no signature checks with key {key.key_id}",
            hint="the envelope was altered, or it was signed with another key (pass that key with --key)",
        )
    return payload_type, payload
