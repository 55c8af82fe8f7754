"""The cluster's task: `inject` a released sidecar into Kubernetes manifests."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from invoke.context import Context

from hookbuild.cli.task import task
from hookbuild.config import Settings


@task(
    short={"release": "r", "file": "f", "output": "o"},
    help={
        "release": "the release to inject, VARIANT@MAJOR.MINOR (e.g. istio@12.0)",
        "file": "manifest to read; '-' or omitted reads stdin",
        "output": "file to write; omitted writes stdout",
        "annotation_only": "only set the sidecar.istio.io/proxyImage annotation (no uprobes, no privileges)",
        "versions_file": "versions.toml to read the release from (default: the configured one)",
    },
)
def inject(
    c: Context,
    settings: Settings,
    release: str,
    file: str = "-",
    output: str | None = None,
    annotation_only: bool = False,
    versions_file: str | None = None,
) -> None:
    """Give every workload in Kubernetes manifests the released istio-proxy sidecar, pinned by digest."""
    from hookbuild.cluster import inject as injecting

    image = injecting.resolve(settings.versions_file, release)
    source = "<stdin>" if file in ("", "-") else file
    text = sys.stdin.read() if source == "<stdin>" else injecting.read_manifest(Path(file))
    result = injecting.inject(text, image=image, annotation_only=annotation_only, source=source)
    if output:
        injecting.write_manifest(Path(output), result.text)
    else:
        sys.stdout.write(result.text)
    changed = sum(workload.changed for workload in result.workloads)
    logging.getLogger("hookbuild").info(
        "%s: %d workload(s), %d changed, image %s", source, len(result.workloads), changed, image.reference
    )
