"""What a release is made from, and when two releases are the same one (idempotent retries)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from hookbuild import record
from hookbuild.errors import RecordError
from hookbuild.release.plan import Plan

log = logging.getLogger("hookbuild")


@dataclass(frozen=True, kw_only=True)
class Origin:
    """The sources a binary comes from: checkout commits, or those a recorded release was built from."""

    commits: dict[str, str]  # role ("envoy", "proxy") -> commit
    dirty: bool


def origin_of(plan: Plan) -> Origin:
    if plan.based_on is not None:
        release = plan.based_on.release
        assert release is not None
        commits = {"envoy": release.envoy_commit}
        if release.proxy_commit:
            commits["proxy"] = release.proxy_commit
        return Origin(commits=commits, dirty=release.dirty)
    from hookbuild.build import sources

    assert plan.envoy is not None
    states = [sources.inspect(plan.envoy, role="envoy")]
    if plan.proxy is not None:
        states.append(sources.inspect(plan.proxy, role="proxy"))
    sources.require_clean(states, allow_dirty=plan.allow_dirty)
    return Origin(commits={s.role: s.commit for s in states}, dirty=any(s.dirty for s in states))


def inputs_key(plan: Plan, origin: Origin) -> str | None:
    """What makes two releases the same. A dirty tree is never the same as anything."""
    if origin.dirty:
        return None
    patches = plan.build.envoy_patches if plan.build else ()
    data = {
        "variant": plan.variant.name,
        "sources": origin.commits,
        "envoy_mode": plan.envoy_mode.value,
        "build": plan.build.command.display() if plan.build else None,
        "debug_build": plan.debug_build.command.display() if plan.debug_build else None,
        "patches": [hashlib.sha256(p.read_bytes()).hexdigest() for p in patches if p.is_file()],
        "base_image": plan.base_image,
        "packages": list(plan.packages),
        "dockerfile": hashlib.sha256(plan.dockerfile.read_bytes()).hexdigest(),
        "image": str(plan.image),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def recorded(plan: Plan, key: str | None) -> record.Entry | None:
    """The recorded release this one repeats, if any; refuse a different release under the same version.

    A version recorded without a release (made by `invoke bump`) is what the release fills in.
    """
    entry = record.load(plan.versions_file).find(plan.variant.name, plan.version)
    if entry is None or entry.release is None:
        return None
    if key is not None and entry.release.inputs_key == key:
        return entry
    if plan.force:
        log.warning(
            "%s@%s is recorded with other inputs; --force replaces it", plan.variant.name, plan.version
        )
        return None
    raise RecordError(
        f"{plan.variant.name}@{plan.version} is already recorded in {plan.versions_file} with other inputs",
        hint="release a new version (`invoke bump`), or pass --force to replace the record",
    )
