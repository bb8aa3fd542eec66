"""`hf-resnet evaluate`: the parser only; torch, transformers and evaluate load when the command runs.

On several processes: `accelerate launch -m hf_resnet evaluate --model M --test_dir DIR`.
"""

from __future__ import annotations

import argparse
import sys

from ..model.arguments import TTA_MODES


def _evaluate(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from .run import evaluate

    try:
        result = evaluate(
            args.model,
            test_dir=args.test_dir,
            dataset_name=args.dataset_name,
            dataset_config=args.dataset_config,
            split=args.split,
            output_dir=args.output_dir,
            metrics=args.metrics,
            batch_size=args.batch_size,
            update_card=args.update_card,
            image_column=args.image_column,
            label_column=args.label_column,
            max_samples=args.max_samples,
            verify_images=not args.no_verify_images,
            skip_bad_images=args.skip_bad_images,
            num_workers=args.num_workers,
            tta=args.tta,
        )
    except ValueError as error:  # EvaluationError, DataError and ImageError: the user's input, named
        print(f"hf-resnet evaluate: {error}", file=sys.stderr)
        return 2
    state = PartialState()
    if state.is_main_process:
        width = max(len(key) for key in result.metrics)
        for key, value in result.metrics.items():
            print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
        print(f"Results, per-class report and plots: {result.output_dir}/")
    state.destroy_process_group()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `evaluate`.

    >>> parser = argparse.ArgumentParser(prog="hf-resnet")
    >>> register(parser.add_subparsers(required=True))
    >>> parser.parse_args(["evaluate", "--model", "m", "--test_dir", "photos/test"]).split
    'test'
    """
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a labelled test set: test_results.json, per-class report, plots",
        description="Score any image-classification checkpoint on labelled images. Writes test_results.json "
        "(the keys of eval_results.json with a test_ prefix), test_per_class.json, test_confusion_matrix.png "
        "(a multi-label model: test_average_precision.png) and test_mistakes.png. A multi-label model is "
        "scored on label sets at the thresholds in its config. Several processes: accelerate launch -m hf_resnet "
        "evaluate ...",
    )
    parser.add_argument(
        "--model", required=True, help="model folder (an hf_resnet output or any checkpoint) or Hub id"
    )
    parser.add_argument(
        "--test_dir",
        "--test-dir",
        default=None,
        help="folder with one sub-folder of images per class, or (multi-label) a metadata.jsonl/csv of label sets",
    )
    parser.add_argument(
        "--dataset_name", "--dataset-name", default=None, help="Hub dataset id (instead of --test_dir)"
    )
    parser.add_argument("--dataset_config", "--dataset-config", default=None, help="configuration of the Hub dataset")
    parser.add_argument("--split", default="test", help="split of the Hub dataset (default: test)")
    parser.add_argument("--image_column", "--image-column", default=None, help="image column (default: image, img)")
    parser.add_argument("--label_column", "--label-column", default=None, help="label column (default: label, labels)")
    parser.add_argument(
        "--output_dir", "--output-dir", default=None, help="where results go (default: the model folder)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma-separated metric names, as in `hf-resnet train --metrics` (default: all; multi-label: map, "
        "f1_micro, f1_macro, exact_match)",
    )
    parser.add_argument("--batch_size", "--batch-size", type=int, default=64, help="images per batch and process")
    parser.add_argument("--max_samples", "--max-samples", type=int, default=None, help="score only the first N")
    parser.add_argument(
        "--update_card", "--update-card", action="store_true", help="add the results to the model card's model-index"
    )
    parser.add_argument(
        "--skip_bad_images", "--skip-bad-images", action="store_true", help="leave out undecodable files, warning"
    )
    parser.add_argument(
        "--no_verify_images", "--no-verify-images", action="store_true", help="skip the decode-every-image check"
    )
    parser.add_argument("--num_workers", "--num-workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=TTA_MODES,
        help="test-time augmentation: average the logits over flip (the default of a bare --tta), crops or "
        "flip+crops views; none for one pass. Default: what the model was calibrated with (config.json tta)",
    )
    parser.set_defaults(func=_evaluate)
