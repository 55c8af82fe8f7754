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
