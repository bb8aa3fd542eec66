"""`hf-resnet cache list|clear`: the decoded-image caches on disk, shown and reclaimed, torch-free."""

from __future__ import annotations

import argparse


def _megabytes(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


def _cache(args: argparse.Namespace) -> int:
    from . import cache_store

    root = cache_store.cache_root()
    if args.action == "list":
        found = cache_store.entries(full=args.verify)
        for entry in found:
            images = f", {entry.images} images" if entry.images is not None else ""
            print(f"{entry.path.name}  {_megabytes(entry.bytes)}{images}  {entry.state}")
        total = sum(entry.bytes for entry in found)
        print(f"{len(found)} image cache(s) in {root}, {_megabytes(total)}; hf-resnet cache clear removes them")
        if problem := cache_store.root_problem():
            print(f"No cache can be written there: {problem}")
        return 0
    removed, kept = cache_store.clear()
    for entry in kept:
        print(f"kept {entry.path.name}: {entry.state}")
    print(f"Removed {len(removed)} image cache(s) from {root}: {_megabytes(sum(e.bytes for e in removed))} freed")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `cache`.

    >>> parser = argparse.ArgumentParser(prog="hf-resnet")
    >>> register(parser.add_subparsers(required=True))
    >>> parser.parse_args(["cache", "list", "--verify"]).verify
    True
    """
    parser = subparsers.add_parser(
        "cache",
        help="list or clear the decoded-image caches (--image_cache disk) and the space they take",
        description="The decoded-image caches that `--image_cache disk` (and the default, where one fits) keeps "
        "under $HF_RESNET_CACHE/images (by default ~/.cache/hf_resnet/images) for later runs on the same images. "
        "list shows each with its size and state (checked by size and sampled checksum; --verify reads every "
        "byte); clear removes them all, and the partial folders of stopped runs, keeping any a run is writing "
        "now. A run then builds its cache again when it needs one.",
    )
    parser.add_argument("action", choices=("list", "clear"), help="list: show the caches; clear: remove them")
    parser.add_argument("--verify", action="store_true", help="list: check every byte of each cache")
    parser.set_defaults(func=_cache)
