"""A fresh process serving one form: `python -m hf_resnet.deployment.probe FORM RUN PATH IMAGE BATCH`.

What a deployment pays once and for good, which a process that has already loaded everything cannot
measure: imports and loading until the first answer, and the peak resident memory of serving (one
image, then a full batch). Every form is served here through the same preprocessing (transformers'
image processor, which imports torch), and that shared cost would hide what each form itself costs: so
the process also says when those imports are done (`imported`, with the resident memory then), and the
caller reports the form's own share beside the totals. It prints `answered` when the first answer is
ready (the caller times both lines) and then one JSON line with the peak memory.
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

    print(json.dumps({"imported_rss_mb": round(_status_kb("VmRSS") / 1024, 1)}), flush=True)
    forward = load_forward(name, run, path)
    transform = build_eval_transform(AutoImageProcessor.from_pretrained(run))
    picture = load_picture(image)
    forward(transform([picture])).argmax(-1)
    print("answered", flush=True)
    forward(transform([picture] * int(batch)))
    print(json.dumps({"peak_rss_mb": round(_status_kb("VmHWM") / 1024, 1)}), flush=True)
    return 0


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status: `VmRSS` now, `VmHWM` its peak.

    Not `getrusage`'s `ru_maxrss`: Linux carries it across `exec` from the process that spawned this one,
    so a probe started by a report holding gigabytes would report the report's memory as its own.
    Where /proc has no such file, `ru_maxrss` is the best there is.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(f"{field}:"))
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
