"""The cluster's task: `inject` a released proxy into Kubernetes manifests, or take it out again."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit

from hookbuild.cli.task import task
from hookbuild.config import Settings
from hookbuild.errors import InjectError, UsageError


@task(
    short={"release": "r", "file": "f", "output": "o"},
    help={
        "release": "the release to inject, VARIANT@MAJOR.MINOR (e.g. istio@12.0)",
        "file": "manifest to read (YAML or JSON); '-' or omitted reads stdin",
        "output": "file to write; omitted writes stdout",
        "annotation_only": "istio: only set the sidecar.istio.io/proxyImage annotation (no uprobes, no privileges)",
        "force": 'also inject pods Istio never injects (sidecar.istio.io/inject: "false", hostNetwork, '
        "system namespaces)",
        "container": "patch this Envoy container (plain Envoy: a gateway's or ingress's) instead of the "
        "variant's (istio-proxy, cilium-envoy)",
        "proxy_gid": "the mesh's proxy GID for istio-proxy's runAsGroup (default: the manifest's, else 1337)",
        "check": "change nothing; exit 1 when the manifest would change (for CI)",
        "remove": "take hookbuild's injection back out, exactly (needs no --release)",
        "json": "print per workload what was done (patched, unchanged, skipped and why) as JSON",
        "versions_file": "versions.toml to read the release from (default: the configured one)",
    },
)
def inject(
    c: Context,
    settings: Settings,
    release: str = "",
    file: str = "-",
    output: str | None = None,
    annotation_only: bool = False,
    force: bool = False,
    container: str | None = None,
    proxy_gid: str = "",
    check: bool = False,
    remove: bool = False,
    json: bool = False,
    versions_file: str | None = None,
) -> None:
    """Put a released proxy into every workload of Kubernetes manifests, as Istio would inject it."""
    from hookbuild.cluster import image as images
    from hookbuild.cluster import inject as injecting
    from hookbuild.cluster import targets

    source = "<stdin>" if file in ("", "-") else file
    if remove:
        text = _read(source)
        result = injecting.remove(text, source=source)
        reference = None
    else:
        if not release:
            raise UsageError("inject needs --release VARIANT@MAJOR.MINOR", hint="or --remove to take it out")
        image = images.resolve(settings.versions_file, release)
        target = targets.for_release(image.variant, container=container, gid=_gid(proxy_gid))
        text = _read(source)
        result = injecting.inject(
            text, image=image, target=target, annotation_only=annotation_only, force=force, source=source
        )
        reference = image.reference
    changed = result.text != text
    if json:
        from hookbuild.cli.output import print_json

        print_json(
            {
                "source": source,
                "release": release or None,
                "image": reference,
                "changed": changed,
                "workloads": [workload.as_json() for workload in result.workloads],
            }
        )
    if check:
        if changed:
            count = sum(workload.changed for workload in result.workloads)
            # Not an error: the answer to the question, as an exit code (and in the JSON), for CI.
            raise Exit(f"{source} would change: {count} workload(s); run without --check to write it", code=1)
        return
    if output:
        images.write_manifest(Path(output), result.text)
    elif not json:
        sys.stdout.write(result.text)
    logging.getLogger("hookbuild").info(
        "%s: %d workload(s), %d changed%s",
        source,
        len(result.workloads),
        sum(workload.changed for workload in result.workloads),
        f", image {reference}" if reference else "",
    )


def _gid(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise UsageError(
            f"invalid proxy GID {text!r}", hint="give the mesh's proxy GID as a number, e.g. 1337"
        )
    return int(text)


def _read(source: str) -> str:
    from hookbuild.cluster import image as images

    if source != "<stdin>":
        return images.read_manifest(Path(source))
    # Bytes, not text: text mode would turn CRLF line ends into LF.
    buffer = getattr(sys.stdin, "buffer", None)
    try:
        return buffer.read().decode("utf-8") if buffer is not None else sys.stdin.read()
    except UnicodeDecodeError as exc:
        raise InjectError(f"cannot read stdin: {exc}", hint="pipe a UTF-8 YAML or JSON manifest") from None
