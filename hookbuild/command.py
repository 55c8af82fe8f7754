"""The one place hookbuild starts processes: checks the tool, echoes the command, streams its output.

Secrets travel in the environment only (never argv); their values are masked in every line we echo or write.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hookbuild import secrets
from hookbuild.errors import CommandFailed, ToolMissing

log = logging.getLogger("hookbuild")

TAIL_LINES = 20


@dataclass(frozen=True, kw_only=True)
class Command:
    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the inherited environment."""

    def display(self) -> str:
        assignments = [f"{key}={shlex.quote(value)}" for key, value in sorted(self.env.items())]
        return secrets.redact(" ".join([*assignments, shlex.join(self.argv)]))


@dataclass(frozen=True)
class Completed:
    returncode: int
    output: str


def require(tool: str, *, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"{tool} not found on PATH", hint=hint)
    return path


def _require_program(command: Command) -> None:
    program = command.argv[0]
    if "/" in program:  # a script of the checkout, e.g. ci/run_envoy_docker.sh
        path = Path(program) if Path(program).is_absolute() else (command.cwd or Path.cwd()) / program
        if not os.access(path, os.X_OK):
            raise ToolMissing(f"{path} is missing or not executable", hint="is this the right checkout?")
        return
    require(program, hint=f"install {program} (scripts/setup.sh installs every tool hookbuild uses)")


def run(
    command: Command,
    *,
    log_file: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    what: str | None = None,
) -> Completed:
    """Run to completion, streaming merged stdout/stderr line by line to the log, `log_file` and `on_line`."""
    _require_program(command)
    log.info("$ %s", command.display())
    inherited = {key: value for key, value in os.environ.items() if key not in secrets.ENV_NAMES}
    env = {**inherited, **command.env}  # a command that needs a secret names it in command.env
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        sink: IO[str] | None = None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            sink = stack.enter_context(log_file.open("w", encoding="utf-8"))
            sink.write(f"$ {command.display()}\n")
        # Own session: Ctrl-C is ours to handle, so the whole child group is stopped, not half of it.
        proc = stack.enter_context(
            subprocess.Popen(
                command.argv,
                cwd=command.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        )
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = secrets.redact(raw.rstrip("\n"))
                tail.append(line)
                lines.append(line)
                if sink is not None:
                    sink.write(line + "\n")
                    sink.flush()
                if on_line is not None:
                    on_line(line)
                else:
                    log.debug("%s", line)
            returncode = proc.wait()
        except BaseException:
            _stop(proc)
            raise
    if returncode != 0:
        where = f"; full log: {log_file}" if log_file else ""
        last = " | ".join(line.strip() for line in tail if line.strip())[-600:]
        raise CommandFailed(
            f"{what or command.argv[0]} failed with exit status {returncode}{where}; last lines: {last}",
            returncode=returncode,
        )
    return Completed(returncode, "\n".join(lines))


@dataclass(frozen=True)
class Answer:
    returncode: int
    stdout: str
    stderr: str


def ask(command: Command) -> Answer:
    """Run a short query (`git status`) to completion and capture what it says; the caller reads the exit
    status. Echoed at debug level only: a release asks several before anything happens."""
    _require_program(command)
    log.debug("$ %s", command.display())
    inherited = {key: value for key, value in os.environ.items() if key not in secrets.ENV_NAMES}
    done = subprocess.run(
        command.argv,
        cwd=command.cwd,
        env={**inherited, **command.env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    return Answer(done.returncode, done.stdout, done.stderr)


def _stop(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
