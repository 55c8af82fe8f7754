"""The plan as one JSON object for `release --dry-run --json`: what CI reads, and what tests can run.

`steps` come from the one stage list (`stages.steps`); `builds` lists every build in the order the stages run
them (the debug build of a stripped release first), each with its argv, the environment the plan sets (secrets
masked), where it runs, where its binary is expected and whether the Bazel command keeps the symbol table.
"""

from __future__ import annotations

from typing import Any

from hookbuild import secrets
from hookbuild.build.spec import BuildSpec
from hookbuild.release.plan import Plan
from hookbuild.release.stages import steps


def plan_json(plan: Plan) -> dict[str, Any]:
    builds = [("debug", plan.debug_build), ("release", plan.build)]
    return {
        "variant": plan.variant.name,
        "version": str(plan.version),
        "image": str(plan.image),
        "base_image": plan.base_image,
        "steps": steps(plan),
        "builds": [build_json(role, spec) for role, spec in builds if spec is not None],
    }


def build_json(role: str, spec: BuildSpec) -> dict[str, Any]:
    return {
        "role": role,  # release: the binary shipped; debug: the one the stripped release is traced through
        "argv": [secrets.redact(word) for word in spec.command.argv],
        "env": {name: secrets.redact(value) for name, value in sorted(spec.command.env.items())},
        "cwd": str(spec.command.cwd) if spec.command.cwd else None,
        "output": str(spec.output),
        "archive_member": spec.archive_member,
        "keeps_symbols": spec.keeps_symbols,
        "strategy": spec.strategy,
        "build_image": spec.image,
        "notes": list(spec.notes),
    }
