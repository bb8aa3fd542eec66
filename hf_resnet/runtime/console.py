"""What a run writes to the terminal: hf_resnet's own lines, without the libraries' chatter that repeats them.

A person reads the plan, the progress bar, one line per evaluation and the result. The libraries
also log each HTTP request, a table of the classifier weights a new head replaces, a warning that
`num_labels` differs from the checkpoint's labels (the new head is the point), a backend fallback
that changes nothing, and a processor that saves itself elsewhere; hf_resnet says what matters of
these in its own words, so the console drops them. Only the console: files and `report_to`
backends are untouched. `--verbose` brings everything back.

This uses logging's public hooks only: a filter on the handlers that write to the terminal (the
root logger's and transformers' own), whose decision follows the last `quiet_libraries` call.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

#: What the libraries log that hf_resnet already says (or that is about nothing that happened), by message text.
REPEATED = (
    "LOAD REPORT",  # transformers' table of the replaced head: "New N-class head on ..." says it
    "which is incompatible to the `id2label` map",  # the new head is sized for the data's labels on purpose
    "backend is not available. Falling back",  # a processor without a torchvision variant: same pixels either way
    "`save_pretrained` method is disabled",  # TimmWrapperImageProcessor: the run folder's processor is saved apart
)
#: Loggers whose INFO lines are one per request or file (httpx under huggingface_hub, its 2.x successor).
CHATTY = ("httpx", "httpx2", "httpcore", "urllib3", "huggingface_hub", "filelock")


class LibraryChatter(logging.Filter):
    """Drops `REPEATED` messages and the INFO lines of `CHATTY` loggers, unless verbose."""

    def __init__(self) -> None:
        super().__init__("")
        self.verbose = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        if record.levelno < logging.WARNING and record.name.split(".")[0] in CHATTY:
            return False
        message = record.getMessage()
        return not any(text in message for text in REPEATED)


_CHATTER = LibraryChatter()


def console_handlers() -> list[logging.Handler]:
    """The handlers that write the run's log to a stream (the terminal): the root logger's and transformers' own.

    A log file someone set up (a `FileHandler`) keeps everything.
    """
    handlers = [*logging.getLogger().handlers, *logging.getLogger("transformers").handlers]
    return [
        handler
        for handler in handlers
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
    ]


def quiet_libraries(verbose: bool = False) -> None:
    """Keep library chatter off the terminal (see the module docstring); `verbose` lets all of it through."""
    _CHATTER.verbose = verbose
    for handler in console_handlers():
        if _CHATTER not in handler.filters:
            handler.addFilter(_CHATTER)


@contextmanager
def one_line_run(verbose: bool):
    """Around a throw-away run (an lr-find sweep, a search trial) whose caller says its result in one line.

    Yields the `--log_level` to give the run: `warning` quiets its own plan and evaluation lines (see
    training/run.py), unless `verbose`. hf_resnet's level, which the run sets, is restored after it.
    """
    own = logging.getLogger("hf_resnet")
    level = own.level
    try:
        yield "passive" if verbose else "warning"
    finally:
        own.setLevel(level)
