"""hookbuild's tasks: thin wrappers over the `hookbuild` library, one module per room. Run `invoke --list`.

Heavy modules (docker, git, pyelftools) are imported inside the tasks that need them, so queries stay fast.
"""

from invoke.collection import Collection

from hookbuild.cli import cluster, record, release, symbols

ns = Collection(
    release.release,
    record.versions,
    record.bump,
    record.deprecate,
    record.changelog,
    symbols.symbols,
    symbols.trace_script,
    cluster.inject,
)
