"""The one error hierarchy. Every failure the user can act on is a `HookbuildError`.

The library raises; only the task layer turns an error into a single `error:` line and an exit code.
Exit codes (README "Exit codes"; tests/test_exit_codes.py holds them): each kind of failure CI may want to
tell apart has its own code.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a hookbuild task's exit status means."""

    OK = 0
    FAILED = 1  # anything else: a malformed record, a source checkout, a workspace, a binary...
    USAGE = 2  # bad flags, arguments or settings
    TOOL_MISSING = 3  # docker, bazel, git, bpftrace or the registry is not there
    BUILD = 4  # the build (Bazel, make, the build container) failed
    IMAGE = 5  # building, checking or pushing the image failed
    RECORD_CONFLICT = 6  # the record says otherwise: already released, a version still planned, locked
    REGISTRY_DRIFT = 7  # a recorded tag no longer holds its recorded digest
    BREAKING_DIFF = 8  # `symbols --diff`: a recorded uprobe script would break
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class HookbuildError(Exception):
    """A failure with a message saying what and where, and a hint saying how to fix it."""

    exit_code: int = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        """The whole error as one line for a terminal or a CI log."""
        text = " ".join(self.message.split())
        return f"{text} ({' '.join(self.hint.split())})" if self.hint else text


class UsageError(HookbuildError):
    """Bad arguments or configuration given by the user."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """A configuration value (pyproject, invoke.yaml, HOOKBUILD_* env) is invalid."""


class VersionError(UsageError):
    """A version string is not MAJOR.MINOR, or a release reference is unknown."""


class RecordError(HookbuildError):
    """versions.toml is malformed or violates the schema."""


class RecordConflict(RecordError):
    """An edit or a release conflicts with what the record says (already released, planned, locked)."""

    exit_code = ExitCode.RECORD_CONFLICT


class RegistryDrift(HookbuildError):
    """A recorded release's tag no longer holds the recorded digest (or is gone)."""

    exit_code = ExitCode.REGISTRY_DRIFT


class ToolMissing(HookbuildError):
    """An external tool or service (docker, bazel, git, bpftrace, registry) is not available."""

    exit_code = ExitCode.TOOL_MISSING


class CommandFailed(HookbuildError):
    """An external command exited non-zero."""

    def __init__(self, message: str, *, returncode: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.returncode = returncode


class SourceError(HookbuildError):
    """A source checkout is missing, not a git repository, or dirty."""


class WorkspaceError(HookbuildError):
    """The proxy checkout's WORKSPACE cannot be rewritten (no envoy rule, several, syntax error)."""


class OutputError(HookbuildError):
    """The built binary cannot be located (dangling bazel-bin, missing volume, no file)."""


class SymbolError(HookbuildError):
    """A binary cannot be read as ELF, or has no hookpoints."""


class ImageError(HookbuildError):
    """Building, checking or pushing the container image failed."""

    exit_code = ExitCode.IMAGE


class RegistryError(ImageError):
    """The registry's HTTP API failed: unreachable, access refused, or content not matching its digest."""


class BuildFailed(HookbuildError):
    """The build of Envoy (Bazel, make, the build container) failed."""

    exit_code = ExitCode.BUILD


class InjectError(HookbuildError):
    """Kubernetes manifests cannot be injected."""


class SupplyError(HookbuildError):
    """Signing, attaching, verifying or promoting a release failed (issue 13's supply chain)."""


class SigningError(SupplyError):
    """The provenance or SBOM could not be made or signed: the release fails and records nothing."""


class VerifyError(SupplyError):
    """A release is not what was recorded and signed: a moved tag, an altered envelope, the wrong key."""
