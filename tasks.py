"""hookbuild's tasks: thin wrappers over the `hookbuild` library, one module per room. Run `invoke --list`.

The collection is composed in `hookbuild.cli.namespace()`; heavy modules (docker, git, numpy, tomlkit) are
imported inside the tasks that need them, so queries stay fast.
"""

from hookbuild.cli import namespace
from hookbuild.cli.task import interrupt_before_tasks

interrupt_before_tasks()
ns = namespace()
