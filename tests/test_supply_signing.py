"""Keys and DSSE envelopes: real ed25519 / ECDSA P-256 keys made by openssl, real signatures, real tampering."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path

import pytest

from hookbuild import secrets
from hookbuild.errors import UsageError, VerifyError
from hookbuild.supply import signing


def openssl_key(path: Path, *args: str, password: str | None = None) -> Path:
    """A private key PEM made by openssl, mode 0600 (encrypted with `password` if given)."""
    crypt = ["-aes-256-cbc", "-pass", "env:KEYPASS"] if password else []
    env = {"PATH": "/usr/bin:/bin", "KEYPASS": password or ""}
    subprocess.run(
        ["openssl", "genpkey", *args, *crypt, "-out", str(path)], check=True, env=env, capture_output=True
    )
    path.chmod(0o600)
    return path


def public_half(private: Path) -> Path:
    out = private.with_suffix(".pub")
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(out)], check=True, capture_output=True
    )
    return out


def test_pae_is_the_dsse_spec_encoding() -> None:
    # The DSSE specification's own example (envelope.md / protocol.md).
    assert signing.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize(
    "algorithm", [["-algorithm", "ed25519"], ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]]
)
def test_an_envelope_opens_with_the_public_key_and_not_after_tampering(
    tmp_path: Path, algorithm: list[str]
) -> None:
    key = openssl_key(tmp_path / "key.pem", *algorithm)
    signer = signing.load_signer(key, env={})
    public = signing.load_public_key(public_half(key))
    assert public.key_id == signer.key_id and public.key_id.startswith("sha256:")
    envelope = signing.sign_envelope(signer, b'{"_type": "x"}')
    assert signing.open_envelope(envelope, public, where="t") == (signing.IN_TOTO_PAYLOAD, b'{"_type": "x"}')
    data = json.loads(envelope)
    assert data["signatures"][0]["keyid"] == signer.key_id
    data["payload"] = base64.b64encode(b'{"_type": "y"}').decode()
    with pytest.raises(VerifyError, match="no signature checks with key"):
        signing.open_envelope(json.dumps(data).encode(), public, where="t")
    data = json.loads(envelope)
    data["payloadType"] = "text/plain"  # the PAE binds the type too
    with pytest.raises(VerifyError, match="no signature checks"):
        signing.open_envelope(json.dumps(data).encode(), public, where="t")


def test_the_wrong_key_does_not_open_an_envelope(tmp_path: Path) -> None:
    signer = signing.load_signer(openssl_key(tmp_path / "a.pem", "-algorithm", "ed25519"), env={})
    other = signing.load_public_key(openssl_key(tmp_path / "b.pem", "-algorithm", "ed25519"), env={})
    with pytest.raises(VerifyError, match=f"no signature checks with key {other.key_id}"):
        signing.open_envelope(signing.sign_envelope(signer, b"{}"), other, where="t")


def test_not_an_envelope_is_one_clear_error(tmp_path: Path) -> None:
    public = signing.load_public_key(openssl_key(tmp_path / "a.pem", "-algorithm", "ed25519"), env={})
    with pytest.raises(VerifyError, match="is not a DSSE envelope"):
        signing.open_envelope(b"<html>", public, where="t")


def test_an_encrypted_key_takes_its_password_from_the_environment_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "correct-horse-battery-staple-71"
    key = openssl_key(tmp_path / "enc.pem", "-algorithm", "ed25519", password=password)
    with pytest.raises(UsageError, match="encrypted and no password is set") as no_password:
        signing.load_signer(key, env={})
    assert signing.PASSWORD_ENV in (no_password.value.hint or "")
    with pytest.raises(UsageError, match="not its password"):
        signing.load_signer(key, env={signing.PASSWORD_ENV: "wrong-password"})
    signer = signing.load_signer(key, env={signing.PASSWORD_ENV: password})
    assert signer.key_id.startswith("sha256:")
    # registered as a secret: masked wherever hookbuild writes text
    assert secrets.redact(f"pw={password}") == f"pw={secrets.MASK}"
    logging.getLogger("hookbuild").info("the password is %s", password)
    assert password not in caplog.text


def test_keys_others_can_read_and_other_key_types_are_refused(tmp_path: Path) -> None:
    key = openssl_key(tmp_path / "open.pem", "-algorithm", "ed25519")
    key.chmod(0o640)
    with pytest.raises(UsageError, match="readable by others") as readable:
        signing.load_signer(key, env={})
    assert "chmod 600" in (readable.value.hint or "")
    rsa = openssl_key(tmp_path / "rsa.pem", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    with pytest.raises(UsageError, match="not an ed25519 or ECDSA P-256 key"):
        signing.load_signer(rsa, env={})
    p384 = openssl_key(tmp_path / "p384.pem", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
    with pytest.raises(UsageError, match="not an ed25519 or ECDSA P-256 key"):
        signing.load_signer(p384, env={})
    with pytest.raises(UsageError, match="does not exist"):
        signing.load_signer(tmp_path / "missing.pem", env={})
    (tmp_path / "junk.pem").write_text("not a key")
    (tmp_path / "junk.pem").chmod(0o600)
    with pytest.raises(UsageError, match="not a PEM private key"):
        signing.load_signer(tmp_path / "junk.pem", env={})
