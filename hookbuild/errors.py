"""The one error hierarchy. Every failure the user can act on is a `HookbuildError`.

The library raises; only the task layer turns an error into a single `error:` line and an exit code.
"""

from __future__ import annotations


class HookbuildError(Exception):
    """A failure with a message saying what and where, and a hint saying how to fix it."""

    exit_code = 1

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

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value (pyproject, invoke.yaml, HOOKBUILD_* env) is invalid."""


class VersionError(UsageError):
    """A version string is not MAJOR.MINOR, or a release reference is unknown."""


class RecordError(HookbuildError):
    """versions.toml is malformed, violates the schema, or an edit conflicts with it."""


class ToolMissing(HookbuildError):
    """An external tool or service (docker, bazel, git, bpftrace, registry) is not available."""

    exit_code = 3


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
    """Building or pushing the container image failed."""


class InjectError(HookbuildError):
    """Kubernetes manifests cannot be injected."""


class SupplyError(HookbuildError):
    """Signing, attaching, verifying or promoting a release failed (issue 13's supply chain)."""


class SigningError(SupplyError):
    """The provenance or SBOM could not be made or signed: the release fails and records nothing."""


class VerifyError(SupplyError):
    """A release is not what was recorded and signed: a moved tag, an altered envelope, the wrong key."""
