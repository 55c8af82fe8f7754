"""The one decorator every task goes through: logging, settings, and errors turned into exit codes.

A task is written `def name(c, settings, ...flags)`: `settings` is not a flag; it is loaded once from
pyproject `[tool.hookbuild]` < invoke.yaml `hookbuild:` < HOOKBUILD_* env < the task's own flags whose names
are settings (e.g. `--registry`, `--versions-file`). Invoke's automatic short flags are off: a short flag
is given deliberately in `short`, so no letter means two things across tasks.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import Task

from hookbuild import collector, config, logs
from hookbuild.errors import HookbuildError
from hookbuild.secrets import redact

INTERRUPTED = 130
_SETTINGS = frozenset(f.name for f in fields(config.Settings)) - {"root"}


@contextmanager
def errors_to_exit(*, json: bool = False) -> Iterator[None]:
    """The only place a HookbuildError turns into output: `error: ...` on stderr (and JSON on stdout for
    `--json`), with the error's exit code."""
    try:
        yield
    except HookbuildError as exc:
        line = redact(exc.line())
        if json:
            from hookbuild.cli.output import print_json

            hint = redact(exc.hint) if exc.hint else None
            print_json({"error": redact(exc.message), "hint": hint, "exit": exc.exit_code})
        raise Exit(f"error: {line}", code=exc.exit_code) from None
    except KeyboardInterrupt:
        raise Exit("error: interrupted", code=INTERRUPTED) from None


def task(
    *,
    help: Mapping[str, str],
    short: Mapping[str, str] | None = None,
    iterable: Sequence[str] = (),
    positional: Sequence[str] | None = None,
    optional: Sequence[str] = (),
    name: str | None = None,
    collect_cycles: bool = True,
) -> Callable[[Callable[..., None]], Task[Any]]:
    """Make `fn(c, settings, **flags)` an Invoke task with hookbuild's logging, settings and exit codes.

    `collect_cycles=False` runs the task with the cyclic garbage collector paused: for the record's short
    queries and edits, whose loaded record (ten acyclic objects per entry) the collector would otherwise
    walk three more times once it is loaded, a tenth of a 10,000-entry query. Reference counting still
    frees everything, and the collector is back on when the task ends.
    """

    def wrap(fn: Callable[..., None]) -> Task[Any]:
        signature = inspect.signature(fn)
        parameters = [p for p in signature.parameters.values() if p.name != "settings"]

        # Invoke hands a missing positional argument whatever comes next, `-h` too: that asks for help.
        wanted = [p.name for p in parameters[1:] if p.default is inspect.Parameter.empty]
        task_name = (name or fn.__name__).replace("_", "-")

        @functools.wraps(fn)
        def body(c: Context, *args: Any, **kwargs: Any) -> None:
            if any(kwargs.get(key) in ("-h", "--help") for key in (positional or wanted)):
                _print_help(task_name)
                return
            _interrupt_inside_tasks()
            _no_collection_at_exit()
            logs.setup(verbose=bool(kwargs.get("verbose")))
            with errors_to_exit(json=bool(kwargs.get("json"))):
                overrides = {key: value for key, value in kwargs.items() if key in _SETTINGS}
                invoke_config = dict(c.config.get("hookbuild", {}) or {})
                settings = config.load(invoke_config=invoke_config, overrides=overrides)
                if collect_cycles:
                    fn(c, settings, *args, **kwargs)
                    return
                with collector.paused_gc():
                    fn(c, settings, *args, **kwargs)

        body.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        del body.__wrapped__  # invoke reads the flags from __signature__, without `settings`
        return HookbuildTask(
            body,
            name=name,
            help=dict(help),
            iterable=list(iterable),
            positional=list(positional) if positional is not None else None,
            optional=list(optional),
            auto_shortflags=False,
            short=dict(short or {}),
        )

    return wrap


def _print_help(name: str) -> None:
    """`invoke --help NAME`, for `invoke NAME -h` when NAME takes a positional argument."""
    from invoke.program import Program

    # Loads tasks.py the way `invoke` just did (searching up from the current directory).
    Program(binary="inv[oke]").run(["invoke", "--help", name], exit=True)


class HookbuildTask(Task[Any]):
    """An Invoke task whose only short flags are the ones given in `short` (flag name -> letter)."""

    def __init__(self, body: Callable[..., Any], *, short: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self.short = dict(short)

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        if letter := self.short.get(name):
            opts["names"] = [*opts["names"], letter]
        return opts


def interrupt_before_tasks() -> None:
    """Until a task starts, Ctrl-C ends `invoke` at once with 130 (invoke itself would exit 1): nothing has
    run yet, so there is nothing to undo. Inside a task, Ctrl-C is a KeyboardInterrupt that cleans up."""
    import os
    import signal
    import threading

    def stop(signum: int, frame: object) -> None:
        os.write(2, b"error: interrupted\n")
        os._exit(INTERRUPTED)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, stop)


@functools.cache
def _no_collection_at_exit() -> None:
    """Freeze every object at exit: the interpreter's last cycle collections then skip them.

    Those collections walk every object the task's imports made (docker, cryptography, the CycloneDX model,
    tomlkit...) only to free memory the process is about to give back: ~0.1 s of CPU at the end of every
    task, measured as the whole process. Atexit handlers and the weakref finalizers that clean up temporary
    directories run as before; only objects still in reference cycles at exit are not freed one by one.
    """
    import atexit
    import gc

    atexit.register(gc.freeze)


def _interrupt_inside_tasks() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
