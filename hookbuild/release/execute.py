"""Running a plan: the stages in order, under the release's lock; nothing is recorded unless all succeeded.

A retry with the same inputs finds the existing record in the first stage and reports it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hookbuild import fsutil
from hookbuild.release.plan import Plan
from hookbuild.release.result import Result
from hookbuild.release.stages import STAGES, Run

if TYPE_CHECKING:
    import docker

    from hookbuild.images.registry_api import Registry

log = logging.getLogger("hookbuild")


def execute(
    plan: Plan,
    *,
    client: docker.DockerClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    connect: Callable[[str], Registry] | None = None,
) -> Result:
    """Run the plan. One release of a variant@version at a time: a second one started meanwhile waits, then
    finds the first one's record (same inputs: reported, nothing pushed) instead of moving the pushed tag."""
    plan.dist.mkdir(parents=True, exist_ok=True)

    def waiting() -> None:
        log.info("waiting for another release of %s to finish", plan.ref)

    with fsutil.locked(plan.dist / ".release.lock", on_wait=waiting), ExitStack() as stack:
        run = Run(plan=plan, now=now, stack=stack, client=client, connect=connect, started=now())
        if client is None:  # its own client, which the stages connect when they first need it
            stack.callback(run.close_engine)  # the last thing the run undoes: every stage is done with it
        for stage in STAGES:
            if not stage.applies(plan):
                continue
            with run.timed(stage.name):
                stage.run(run)
            if run.existing is not None:
                log.info("%s is already released from these inputs: nothing to do", plan.ref)
                return _reported(run)
        assert run.info is not None and run.digest is not None
        log.info("released %s: %s@%s", plan.ref, plan.image.name, run.digest)
        return Result(
            variant=plan.variant.name,
            version=str(plan.version),
            image=str(plan.image),
            digest=run.digest,
            binary=plan.binary,
            binary_sha256=run.info.sha256,
            binary_size=plan.binary.stat().st_size,
            hookpoints=len(run.info.hookpoints),
            reused=False,
            durations=run.durations,
            key_id=run.signed.key_id if run.signed else None,
            attestation=run.signed.attestation if run.signed else None,
            sbom=run.signed.sbom if run.signed else None,
        )


def _reported(run: Run) -> Result:
    plan, provenance = run.plan, run.existing
    assert provenance is not None
    return Result(
        variant=plan.variant.name,
        version=str(plan.version),
        image=provenance.image,
        digest=provenance.digest,
        binary=plan.binary,
        binary_sha256=provenance.binary_sha256,
        binary_size=plan.binary.stat().st_size if plan.binary.exists() else 0,
        hookpoints=len(provenance.hookpoints),
        reused=True,
        durations=run.durations,
        key_id=provenance.key_id,
        attestation=provenance.attestation,
        sbom=provenance.sbom,
    )
