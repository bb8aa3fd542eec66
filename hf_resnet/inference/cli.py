"""`hf-resnet classify`, `explain`, `export` and `demo`.

Parsers only: torch, transformers and onnxruntime are imported when a command runs, not when
`hf-resnet --help` lists the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..model.arguments import TTA_MODES


def _classify(args: argparse.Namespace) -> int:
    from ..data.images import ImageError, opened
    from ..families.loading import ModelLoadError
    from .classifier import classify

    try:
        for name in args.images:  # a missing file or a folder is reported before the model loads
            if not name.startswith(("http://", "https://")) and not Path(name).is_file():
                with opened(name):
                    pass
        answers = classify(
            args.images,
            model=args.model,
            top_k=args.top_k,
            device=args.device,
            backend=args.backend,
            precision=args.precision,
            tta=args.tta,
        )
    except (ImageError, ModelLoadError, FileNotFoundError) as error:
        print(f"hf-resnet classify: {error}", file=sys.stderr)
        return 2
    if args.json:  # a list, not a dict keyed by path: `classify a.jpg a.jpg` answers twice, in order
        print(json.dumps([{"image": name, "labels": answer} for name, answer in zip(args.images, answers)], indent=2))
        return 0
    for name, answer in zip(args.images, answers):
        print(name)
        for entry in answer:
            print(f"  {entry['score']:.4f}  {entry['label']}")
    return 0


def _positive(text: str) -> int:
    if not text.lstrip("+").isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of labels")
    return int(text)


def _explain(args: argparse.Namespace) -> int:
    from .classifier import load_classifier
    from .gradcam import check_out, explain, explain_labels, labelled_path

    target = int(args.target) if args.target is not None and args.target.isdigit() else args.target
    try:
        check_out(args.out)  # before the model loads
        classifier = load_classifier(args.model, device=args.device)
        if target is None and classifier.task.label_sets:  # one map per label of the set, each in its own file
            explanations = explain_labels(args.image, model=classifier, out=args.out)
            written = [labelled_path(args.out, explanation.label) for explanation in explanations]
        else:
            explanations = [explain(args.image, model=classifier, target=target, out=args.out)]
            written = [args.out]
    except ValueError as error:  # ImageError and ModelLoadError are ValueErrors; so are unknown targets
        print(f"hf-resnet explain: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(f"hf-resnet explain: --out {args.out}: cannot write there ({error.strerror})", file=sys.stderr)
        return 2
    for explanation, path in zip(explanations, written):
        print(f"{explanation.label}\t{explanation.score:.4f}\t{path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..families.loading import ModelLoadError
    from .onnx_export import MIN_INT8_AGREEMENT, ExportError, export

    try:
        report = export(
            args.model,
            out=args.out,
            format=args.format,
            quantize=args.quantize,
            calibration_images=args.calibration_dir,
            sample_images=args.sample_dir,
            min_agreement=MIN_INT8_AGREEMENT if args.min_agreement is None else args.min_agreement,
            latency_repeats=args.repeats,
        )
    except (ExportError, ModelLoadError) as error:
        print(f"hf-resnet export: {error}", file=sys.stderr)
        return 2
    _print_report(report)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..families.loading import ModelLoadError
    from .demo import DemoError, launch

    try:
        launch(
            args.model,
            server_name=args.server_name,
            server_port=args.server_port,
            share=args.share or None,
            device=args.device,
            top_k=args.top_k,
        )
    except (DemoError, ModelLoadError) as error:
        print(f"hf-resnet demo: {error}", file=sys.stderr)
        return 2
    return 0


def _print_report(report) -> None:
    # A multi-label model answers with label sets: their agreement, not the top logit's, is what counts.
    agree = "sets agree" if report.onnx.label_set_agreement is not None else "top-1 agree"
    print(f"{'runtime':<13} {'size MB':>8} {'ms @1':>8} {'ms @32':>8} {'max |dlogit|':>13} {agree:>12}")
    for name in ("eager", "onnx", "int8", "openvino", "openvino_int8"):
        variant = getattr(report, name)
        if variant is None:
            continue
        size = f"{variant.size_mb:.1f}" if variant.size_mb is not None else "-"
        print(
            f"{name:<13} {size:>8} {variant.latency_ms_batch1:>8.1f} {variant.latency_ms_batch32:>8.1f} "
            f"{variant.max_logit_diff:>13.2g} {variant.agreement:>12.1%}"
        )
    print(f"{report.sample_images} sample images; report in {Path(report.out_dir) / 'export_report.json'}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `classify`, `explain`, `export` and `demo`.

    >>> parser = argparse.ArgumentParser(prog="hf-resnet")
    >>> register(parser.add_subparsers(required=True))
    >>> parser.parse_args(["classify", "cat.jpg", "--model", "m"]).top_k
    5
    """
    parser = subparsers.add_parser("classify", help="classify images (paths or URLs) with a model")
    parser.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files or http(s) URLs (for a folder, its files: DIR/*)"
    )
    parser.add_argument(
        "--model", required=True, help="Hub id, model folder, or the .onnx/.xml file with --backend onnx/openvino"
    )
    parser.add_argument("--top-k", type=_positive, default=5, help="labels to show per image (default: 5)")
    parser.add_argument(
        "--json", action="store_true", help='print [{"image": IMAGE, "labels": [{label, score}, ...]}, ...] as JSON'
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the fastest present)")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "openvino"),
        default="torch",
        help="runtime (default: torch); onnx and openvino run `hf-resnet export`'s files on CPU",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: bf16 where the CPU or GPU runs it natively, else fp32 (default: auto)",
    )
    parser.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=TTA_MODES,
        help="test-time augmentation: average over flip (a bare --tta), crops or flip+crops views; none for one "
        "pass. Default: what the model was calibrated with (config.json tta)",
    )
    parser.set_defaults(func=_classify)

    parser = subparsers.add_parser(
        "explain",
        help="save a Grad-CAM overlay showing where a class is seen",
        description="Save a Grad-CAM overlay of where the model saw a class. A multi-label model gets one overlay "
        "per label of its answer (each label at or above its threshold, or the top one when none is), written "
        "to OUT with the label added to its name (cam.png -> cam_<label>.png); --label picks one, written to OUT.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image path or http(s) URL")
    parser.add_argument("--model", required=True, help="Hub id or model folder")
    parser.add_argument("--out", default="cam.png", help="overlay PNG to write (default: cam.png)")
    parser.add_argument(
        "--target",
        "--label",
        default=None,
        help="class label or index to explain (default: the top class; multi-label: every label of the answer)",
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the fastest present)")
    parser.set_defaults(func=_explain)

    parser = subparsers.add_parser(
        "export", help="export to ONNX or OpenVINO (and int8) with a parity check and timings"
    )
    parser.add_argument("--model", required=True, help="Hub id or model folder")
    parser.add_argument(
        "--format",
        choices=("onnx", "openvino"),
        default="onnx",
        help="onnx, or openvino: also an OpenVINO IR, int8 by NNCF (pip install 'hf_resnet[openvino]') "
        "(default: onnx)",
    )
    parser.add_argument("--quantize", choices=("int8",), default=None, help="also write a static int8 model")
    parser.add_argument("--out", default=None, help="output folder (default: <model folder>/<format>)")
    parser.add_argument("--calibration-dir", default=None, help="images to calibrate int8 ranges on")
    parser.add_argument("--sample-dir", default=None, help="images for the parity check (default: sample photos)")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="refuse an int8 model below this top-1 (multi-label: label-set) agreement with fp32 "
        "(default: onnx_export.MIN_INT8_AGREEMENT)",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per latency figure (default: 10)")
    parser.set_defaults(func=_export)

    parser = subparsers.add_parser(
        "demo",
        help="serve a page to try a model on: upload an image, see labels, scores and Grad-CAM (Gradio)",
        description='A Gradio app over classify and explain. Needs the demo extra: pip install "hf_resnet[demo]".',
    )
    parser.add_argument("--model", required=True, help="output folder of a finished run, or Hub id")
    parser.add_argument("--server_name", default=None, help="address to serve on (Gradio's; default: 127.0.0.1)")
    parser.add_argument("--server_port", type=int, default=None, help="port (Gradio's; default: 7860 or next free)")
    parser.add_argument("--share", action="store_true", help="also serve through a public *.gradio.live link")
    parser.add_argument(
        "--top-k", type=int, default=5, help="labels to show (default: 5; multi-label: all over threshold)"
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the fastest present)")
    parser.set_defaults(func=_demo)
