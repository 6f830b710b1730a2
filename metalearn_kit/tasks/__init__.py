"""Tasks and task distributions."""

from .task import Batch, Task, TaskBatch, stack_tasks

__all__ = ["Batch", "Task", "TaskBatch", "stack_tasks"]
