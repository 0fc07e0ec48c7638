"""The benchmark tasks, keyed by name; an unknown name fails with the valid ones."""

from __future__ import annotations

from longchat.bench.base import Task
from longchat.bench.needles import NEEDLES
from longchat.bench.passkey import PASSKEY
from longchat.errors import ConfigError

TASKS: dict[str, Task] = {task.name: task for task in (PASSKEY, NEEDLES)}


def register_task(task: Task) -> Task:
    """Make `task` available by its name (a later name replaces an earlier one)."""
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The task called `name`."""
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown benchmark task {name!r}; valid: {', '.join(sorted(TASKS))}") from None
