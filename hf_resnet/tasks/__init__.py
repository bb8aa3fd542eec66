"""Single-label and multi-label classification, each one object that the rest of the project asks.

A run picks its task once, from the data (`ImageData.problem_type`) or from a saved model's
config (`task_for(config)`), and asks it for the loss, metrics, fitting after training, batch
mixing, class weights, how logits become answers, the per-class report, plot and card section.
No other module asks which problem type it has; a new task is one new module here.
"""

from __future__ import annotations

from .base import Task, markdown_cell
from .multi_label import MULTI_LABEL, MultiLabel
from .single_label import SINGLE_LABEL, SingleLabel

#: The tasks by transformers' `problem_type`.
TASKS: dict[str, Task] = {task.problem_type: task for task in (SingleLabel(), MultiLabel())}

__all__ = ["MULTI_LABEL", "SINGLE_LABEL", "TASKS", "MultiLabel", "SingleLabel", "Task", "markdown_cell", "task_for"]


def task_for(source=None) -> Task:
    """The task of a problem type, of a model config (a `PretrainedConfig` or config.json as a dict), or of None.

    A config reads as transformers' pipeline reads it: multi-label only when its `problem_type` says so
    (no problem type, "single_label_classification" or "regression" read as single-label). A problem
    type given by name must be one of TASKS.

    >>> task_for("multi_label_classification").metric_names(None)
    ['map', 'f1_micro', 'f1_macro', 'exact_match']
    >>> task_for({"problem_type": None}).problem_type
    'single_label_classification'
    """
    if isinstance(source, Task):
        return source
    if source is None or isinstance(source, str):
        name = source or SINGLE_LABEL
        if name not in TASKS:
            raise ValueError(f"problem type {name!r}: choose {' or '.join(TASKS)}")
        return TASKS[name]
    stored = source.get("problem_type") if isinstance(source, dict) else getattr(source, "problem_type", None)
    return TASKS[MULTI_LABEL] if stored == MULTI_LABEL else TASKS[SINGLE_LABEL]
