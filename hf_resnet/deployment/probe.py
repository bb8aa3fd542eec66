"""A fresh process serving one form: `python -m hf_resnet.deployment.probe FORM RUN PATH IMAGE BATCH`.

What a deployment pays once and for good, which a process that has already loaded everything cannot
measure: imports and loading until the first answer, and the peak resident memory of serving (one
image, then a full batch). It prints `answered` when the first answer is ready (the caller times that
line) and then one JSON line with the peak memory.
"""

from __future__ import annotations

import json
import resource
import sys


def main(argv: list[str]) -> int:
    name, run, path, image, batch = argv
    from transformers import AutoImageProcessor

    from ..data.images import load_picture
    from ..data.transforms import build_eval_transform
    from .forms import load_forward

    forward = load_forward(name, run, path)
    transform = build_eval_transform(AutoImageProcessor.from_pretrained(run))
    picture = load_picture(image)
    forward(transform([picture])).argmax(-1)
    print("answered", flush=True)
    forward(transform([picture] * int(batch)))
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    print(json.dumps({"peak_rss_mb": round(peak_kb / 1024, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
