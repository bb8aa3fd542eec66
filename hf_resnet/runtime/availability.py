"""Whether a Hub dataset or model can be had, asked once before any work: from the Hub, or from the cache.

`datasets.load_dataset` and `from_pretrained` on a machine without a connection retry for about
half a minute before they say so (or fall back to a cached copy), and a dataset name that is not
on the Hub ends in a traceback after the model has loaded. One request without retries answers
at once: the repo exists, it does not, or the Hub cannot be reached; then, only in that last
case, the cache is asked without the network.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: Seconds the one request may take; a machine without a connection fails at once (no route, no name).
PROBE_TIMEOUT_S = 10


@contextlib.contextmanager
def _offline(keep: bool = False) -> Iterator[None]:
    """Hub requests off, in huggingface_hub and (if imported) datasets alike (what HF_HUB_OFFLINE=1 sets at import)."""
    from huggingface_hub import constants

    datasets = sys.modules.get("datasets")  # not imported for it: inference does without datasets
    before = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE if datasets else None
    constants.HF_HUB_OFFLINE = True
    if datasets:
        datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if not keep:
            constants.HF_HUB_OFFLINE = before[0]
            if datasets:
                datasets.config.HF_HUB_OFFLINE = before[1]


def _dataset_cached(name: str, config: str | None) -> bool:
    import datasets

    with _offline():
        try:
            datasets.load_dataset_builder(name, config)
        except (ConnectionError, FileNotFoundError, ValueError):
            return False
    return True


def _model_cached(name: str, revision: str | None, cache_dir: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json", cache_dir=cache_dir, revision=revision), str)


#: Model repos the Hub has answered for in this process (name, revision): a second check asks nothing.
_MODELS_FOUND: set[tuple[str, str | None]] = set()


def hub_dataset_problem(name: str, config: str | None = None, token: str | None = None) -> str | None:
    """Why `--dataset_name` cannot be loaded (not on the Hub, or neither reachable nor cached), or None.

    When the Hub cannot be reached but the cache holds the dataset, the process goes offline (as
    HF_HUB_OFFLINE=1 would), so the load that follows reads the cache without half a minute of retries.
    """
    from huggingface_hub import HfApi

    return _repo_problem(
        "dataset",
        name,
        lambda: HfApi().dataset_info(name, timeout=PROBE_TIMEOUT_S, token=token),
        lambda: _dataset_cached(name, config),
        "connect once to download it, or pass --train_dir with your images",
    )


def hub_model_problem(
    name: str, revision: str | None = None, cache_dir: str | None = None, token: str | None = None
) -> str | None:
    """Why the Hub model `name` cannot be loaded (not on the Hub, or neither reachable nor cached), or None.

    As for datasets, an unreachable Hub with the model in the cache sends the process offline, so
    `from_pretrained` reads the cache at once.
    """
    from huggingface_hub import HfApi

    if (name, revision) in _MODELS_FOUND:
        return None
    problem = _repo_problem(
        "model",
        name,
        lambda: HfApi().model_info(name, revision=revision, timeout=PROBE_TIMEOUT_S, token=token),
        lambda: _model_cached(name, revision, cache_dir),
        "connect once to download it, or give a local model folder",
        revision=revision,
    )
    if problem is None:
        _MODELS_FOUND.add((name, revision))
    return problem


def _repo_problem(kind: str, name: str, ask_hub, in_cache, fix: str, revision: str | None = None) -> str | None:
    """What `ask_hub` (one request) and, if the Hub is unreachable, `in_cache` say about a `kind` repo."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            ask_hub()
            return None
        except GatedRepoError:
            return (
                f"a gated {kind}: accept the conditions on its Hub page, then log in (hf auth login) or pass --token"
            )
        except RepositoryNotFoundError:
            return (
                f"no such local folder, and no such {kind} on the Hub (a private one needs hf auth login, or --token)"
            )
        except RevisionNotFoundError:
            return f"the {kind} has no revision {revision!r} on the Hub; check --revision (a branch, tag or commit)"
        except HfHubHTTPError:
            return None  # the Hub answered; what it said is left to the loader, which knows mirrors and scripts
        except Exception as error:  # no connection, in whatever form the HTTP client raises it
            reason = f"the Hub cannot be reached ({type(error).__name__})"
    if in_cache():
        if not constants.HF_HUB_OFFLINE:
            logger.warning("%s; reading the %s %s from the cache, offline", reason, kind, name)
            with _offline(keep=True):
                pass
        return None
    return f"{reason}, and the {kind} is not in the cache; {fix}"
