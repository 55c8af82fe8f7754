"""The release's image stages: build it from the binary and the scripts, check it, push it.

The SBOM is made (the image's packages read, the document rendered) beside the image's last step (its labels,
which change no file) and the push (supply.stage.prepare_sbom): those two only wait on the engine, and one
after the other the three were the longest wait after the build.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from hookbuild.release.plan import Plan
from hookbuild.supply import stage as supply_stage

if TYPE_CHECKING:
    from hookbuild.release.stages import Run

log = logging.getLogger("hookbuild")


def describe_image(plan: Plan) -> list[str]:
    packages = f" with packages {' '.join(plan.packages)}" if plan.packages else ""
    return [f"image: build {plan.dockerfile.name} FROM {plan.base_image}{packages} as {plan.image}"]


def image(run: Run) -> None:
    from hookbuild.images import engine
    from hookbuild.release.labels import labels

    plan = run.plan
    assert run.origin is not None and run.info is not None
    run.released_at = run.now().replace(microsecond=0)
    with _context(plan, run.shipped) as context:
        run.image_id = engine.build(
            run.docker,
            context=context,
            dockerfile=plan.dockerfile.name,
            buildargs={"BASE_IMAGE": plan.base_image, "PACKAGES": " ".join(plan.packages)},
            labels=labels(plan, run.origin, run.info, run.released_at),
            on_line=lambda line: log.info("  %s", line),
            # The SBOM is made from the files as soon as they are final (see prepare_sbom).
            on_files=lambda files: supply_stage.prepare_sbom(run, files),
        )


@contextmanager
def _context(plan: Plan, scripts: tuple[Path, ...]) -> Iterator[Path]:
    """A minimal build context: the Dockerfile, the binary, the scripts, the variant's extra files."""
    for stale in plan.dist.glob("hookbuild-context-*"):  # left by a killed run; we hold the release lock
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="hookbuild-context-", dir=plan.dist) as tmp:
        context = Path(tmp)
        shutil.copyfile(plan.dockerfile, context / plan.dockerfile.name)
        os.link(plan.binary, context / "envoy")
        (context / "tracing").mkdir()
        for script in scripts:
            shutil.copy2(script, context / "tracing" / script.name)
        for name in plan.variant.context_files:
            shutil.copy2(plan.dockerfile.parent / name, context / name)
        yield context


def describe_check(plan: Plan) -> list[str]:
    assert plan.variant.check_command is not None
    return [f"check: run `{' '.join(plan.variant.check_command)}` in the image"]


def check(run: Run) -> None:
    from hookbuild.images import engine

    assert run.plan.variant.check_command is not None and run.image_id is not None
    engine.check(run.docker, run.image_id, run.plan.variant.check_command)


def describe_push(plan: Plan) -> list[str]:
    return [
        f"push: {plan.image} (credentials from HOOKBUILD_REGISTRY_* or the Docker config), "
        "then read the tag's digest back from the registry"
    ]


def push(run: Run) -> None:
    from hookbuild.images import engine, registry

    plan = run.plan
    assert run.image_id is not None
    # The local tag stays only if the release lands (is recorded); the run's stack removes it otherwise.
    run.stack.enter_context(engine.tagged(run.docker, run.image_id, plan.image, keep=lambda: run.recorded))
    if run.sbom is None:  # the build log did not show the files early: read the built image's
        supply_stage.prepare_sbom(run, run.image_id)  # after the tag (see prepare_sbom)
    auth = registry.credentials(plan.image.registry, user=plan.registry_user)
    digest = registry.push(run.docker, plan.image, auth=auth, on_progress=_ProgressLog().line)
    with run.registries()(plan.image.registry) as held:  # converged? only then record
        registry.require_pushed(held, plan.image, digest)
    run.digest = digest


class _ProgressLog:
    """Push progress: one line per layer state change, not one per byte count."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def line(self, layer: str | None, status: str) -> None:
        if layer is None:
            log.info("  ↑ %s", status)
        elif self._last.get(layer) != status:
            self._last[layer] = status
            log.info("  ↑ %s %s", layer, status)
