"""`hf-resnet push`. A parser only: huggingface_hub and the card's plotting are imported when it runs."""

from __future__ import annotations

import argparse
import sys


def _push(args: argparse.Namespace) -> int:
    from .push import PushError, push, repo_id_problem, unfinished_problem

    problem = repo_id_problem(args.repo) or (None if args.allow_unfinished else unfinished_problem(args.output_dir))
    if problem:  # bad input: said before anything is read or sent
        print(f"hf-resnet push: {problem}", file=sys.stderr)
        return 2
    try:
        url = push(
            args.output_dir,
            args.repo,
            private=True if args.private else None,
            revision=args.revision,
            commit_message=args.commit_message,
            space_id=args.space,
            allow_unfinished=args.allow_unfinished,
        )
    except PushError as error:
        print(error, file=sys.stderr)
        return 1
    print(url)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `hf-resnet push OUTPUT_DIR --repo user/name [--private] [--revision R] [--commit-message M] [--space S]`.

    >>> parser = argparse.ArgumentParser(prog="hf-resnet")
    >>> register(parser.add_subparsers(required=True))
    >>> parser.parse_args(["push", "outputs/beans", "--repo", "me/beans"]).repo
    'me/beans'
    """
    parser = subparsers.add_parser(
        "push",
        help="push a finished output folder to the Hub (again: only missing files are sent)",
        description="Push weights, configs, results, plots and a model card to a Hub model repo. The token comes "
        "from HF_TOKEN or `hf auth login` (never from the command line, where shells and logs keep it).",
    )
    parser.add_argument("output_dir", help="output folder of a finished run (holds config.json and model weights)")
    parser.add_argument("--repo", required=True, help="Hub repo id, user/name (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private (no effect if it exists)")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    parser.add_argument("--commit-message", default=None, help="commit message (default: 'Upload <folder> ...')")
    parser.add_argument(
        "--space",
        default=None,
        metavar="USER/NAME",
        help="also create or update a Gradio Space that demos the model (its main branch); the card links to it",
    )
    parser.add_argument(
        "--allow_unfinished",
        action="store_true",
        help="push a run that was stopped before its end (Ctrl-C, SIGTERM) as it is; its card says it is unfinished",
    )
    parser.set_defaults(func=_push)
