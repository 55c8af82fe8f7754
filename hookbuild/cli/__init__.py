"""The task layer: one module of Invoke tasks per room, all through `cli.task.task`. tasks.py composes them."""
