"""hookbuild's tasks: thin wrappers over the `hookbuild` library. Run `invoke --list`.

Heavy modules (docker, git, pyelftools) are imported inside the tasks that need them, so queries stay fast.
"""

from __future__ import annotations

from invoke import task
from invoke.context import Context

from hookbuild.cli import errors_to_exit, print_json  # noqa: F401  (used by the task sections below)

# --- release ---------------------------------------------------------------------------------------

# --- record: versions, bump, deprecate, changelog ---------------------------------------------------

# --- symbols and uprobe scripts ---------------------------------------------------------------------

# --- cluster: inject, trace ------------------------------------------------------------------------


@task(
    help={
        "release": "the release to inject, VARIANT@MAJOR.MINOR (e.g. istio@12.0)",
        "file": "manifest to read; '-' or omitted reads stdin",
        "output": "file to write; omitted writes stdout",
        "annotation_only": "only set the sidecar.istio.io/proxyImage annotation (no uprobes, no privileges)",
        "versions_file": "versions.toml to read the release from (default: the configured one)",
    }
)
def inject(
    c: Context,
    release: str,
    file: str = "-",
    output: str | None = None,
    annotation_only: bool = False,
    versions_file: str | None = None,
) -> None:
    """Give every workload in Kubernetes manifests the released istio-proxy sidecar, pinned by digest."""
    import logging
    import sys
    from pathlib import Path

    from hookbuild import config, logs
    from hookbuild import inject as injecting

    logs.setup()
    with errors_to_exit():
        settings = config.load(overrides={"versions_file": versions_file})
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
            "%s: %d workload(s), %d changed, image %s",
            source, len(result.workloads), changed, image.reference,
        )
