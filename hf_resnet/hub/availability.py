"""Whether a Hub dataset can be had, asked once before any work: from the Hub, or from the cache if it is unreachable.

`datasets.load_dataset` on a machine without a connection retries for about half a minute
before it says so (or falls back to a cached copy), and a name that is not on the Hub ends in a
traceback after the model has loaded. One request without retries answers both at once: the
dataset exists, it does not, or the Hub cannot be reached; then, only in that last case, the
cache is asked without the network.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: Seconds the one request may take; a machine without a connection fails at once (no route, no name).
PROBE_TIMEOUT_S = 10


@contextlib.contextmanager
def _offline(keep: bool = False) -> Iterator[None]:
    """Hub requests off, in huggingface_hub and datasets alike (what HF_HUB_OFFLINE=1 sets at import)."""
    import datasets
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if not keep:
            constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = before


def _cached(name: str, config: str | None) -> bool:
    import datasets

    with _offline():
        try:
            datasets.load_dataset_builder(name, config)
        except (ConnectionError, FileNotFoundError, ValueError):
            return False
    return True


def hub_dataset_problem(name: str, config: str | None = None, token: str | None = None) -> str | None:
    """Why `--dataset_name` cannot be loaded (not on the Hub, or neither reachable nor cached), or None.

    When the Hub cannot be reached but the cache holds the dataset, the process goes offline (as
    HF_HUB_OFFLINE=1 would), so the load that follows reads the cache without half a minute of retries.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            HfApi().dataset_info(name, timeout=PROBE_TIMEOUT_S, token=token)
            return None
        except GatedRepoError:
            return (
                "a gated dataset: accept the conditions on its Hub page, then log in (hf auth login) or pass --token"
            )
        except RepositoryNotFoundError:
            return (
                "no such local folder, and no such dataset on the Hub (a private one needs hf auth login, or --token)"
            )
        except HfHubHTTPError:
            return None  # the Hub answered; what it said is left to datasets, which knows mirrors and scripts
        except Exception as error:  # no connection, in whatever form the HTTP client raises it
            reason = f"the Hub cannot be reached ({type(error).__name__})"
    if _cached(name, config):
        if not constants.HF_HUB_OFFLINE:
            logger.warning("%s; reading the dataset %s from the cache, offline", reason, name)
            with _offline(keep=True):
                pass
        return None
    return (
        f"{reason}, and the dataset is not in the cache; connect once to download it, or pass --train_dir "
        "with your images"
    )
