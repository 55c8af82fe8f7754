"""`verify` and `promote` on bad input, in process: one `error:` line, a non-zero exit, the record unchanged.

The registry that does not answer is a real closed port; the releases are records written the normal way.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from conftest import make_signing_key, run_task

from hookbuild import record
from hookbuild.record import edit

DOWN = "127.0.0.1:5999"  # nothing listens here (test_release uses it for a registry that is down, too)


def record_release(versions: Path, version: str, *, signed: bool, image: str) -> str:
    digest = "sha256:" + hashlib.sha256(version.encode()).hexdigest()
    provenance = record.Provenance(
        image=image,
        digest=digest,
        released_at=datetime(2026, 12, 1, tzinfo=UTC),
        envoy_commit="a" * 40,
        binary_sha256="b" * 64,
        base_image="hookbuild-sample/proxyv2:sample",
        dockerfile="custom_istio.dockerfile",
        signed=signed,
        key_id="sha256:" + "c" * 64 if signed else None,
        attestation="sha256:" + "d" * 64 if signed else None,
        sbom="sha256:" + "e" * 64 if signed else None,
        locations=(image,),
    )
    edit.add_release(versions, "istio", version, provenance)
    return f"istio@{version}"


def one_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[-1]


def test_verify_fails_closed_when_the_registry_does_not_answer(record_copy: Path, tmp_path: Path) -> None:
    ref = record_release(record_copy, "77.1", signed=True, image=f"{DOWN}/ns/istio-proxy:77.1")
    key = make_signing_key(tmp_path / "k.pem")
    ran = run_task("verify", ref, "--versions-file", str(record_copy), "--key", str(key))
    assert ran.returncode != 0
    assert f"registry {DOWN} unreachable" in one_error(ran.stderr)
    ran = run_task("verify", ref, "--versions-file", str(record_copy), "--key", str(key), "--json")
    assert ran.returncode != 0 and '"ok": false' in ran.stdout and "BEGIN PUBLIC KEY" in ran.stdout


def test_verify_refuses_what_was_never_signed(record_copy: Path, tmp_path: Path) -> None:
    key = make_signing_key(tmp_path / "k.pem")
    unsigned = record_release(record_copy, "77.2", signed=False, image=f"{DOWN}/ns/istio-proxy:77.2")
    ran = run_task("verify", unsigned, "--versions-file", str(record_copy), "--key", str(key))
    assert ran.returncode != 0 and "recorded as unsigned" in one_error(ran.stderr)
    hand_kept = next(e for e in record.load(record_copy).entries if e.release is None)
    ran = run_task("verify", hand_kept.ref, "--versions-file", str(record_copy), "--key", str(key))
    assert ran.returncode != 0 and "was not released by hookbuild" in one_error(ran.stderr)
    ran = run_task("verify", unsigned, "--versions-file", str(record_copy), env={"HOOKBUILD_SIGNING_KEY": ""})
    assert ran.returncode == 2 and "no key to verify with" in one_error(ran.stderr)
    ran = run_task(
        "verify", unsigned, "--versions-file", str(record_copy), "--key", str(tmp_path / "none.pem")
    )
    assert ran.returncode == 2 and "does not exist" in one_error(ran.stderr)


def test_promote_refuses_bad_targets_and_changes_nothing(record_copy: Path) -> None:
    ref = record_release(record_copy, "77.3", signed=True, image=f"{DOWN}/ns/istio-proxy:77.3")
    before = record_copy.read_bytes()
    for target, expected in (
        ("", "no --to given"),
        ("127.0.0.1:5001", "invalid promotion target"),
        ("not a registry/ns", "invalid promotion target"),
        (f"{DOWN}/ns", "is where istio@77.3 already lives"),
    ):
        ran = run_task("promote", ref, "--to", target, "--versions-file", str(record_copy))
        assert ran.returncode == 2, (target, ran.stderr)
        assert expected in one_error(ran.stderr)
    ran = run_task("promote", ref, "--to", "127.0.0.1:5001/ns", "--versions-file", str(record_copy))
    assert ran.returncode != 0 and f"registry {DOWN} unreachable" in one_error(ran.stderr)
    assert record_copy.read_bytes() == before
