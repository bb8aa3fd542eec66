"""The files of a Gradio Space that demos a pushed model: a few lines over `hf-resnet demo`, pinned.

The Space holds no weights and no demo code of its own: `app.py` asks the installed hf_resnet
to serve the model repo by id, so the Space shows exactly what `hf-resnet demo --model <repo>`
shows locally, and pushing a retrained model updates the demo without touching the Space. The
requirements pin the versions the push ran with, so a Space rebuilt months later still starts.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

#: Packages whose versions the Space pins to the pushing machine's (Gradio is pinned by the card's sdk_version).
PINNED = ("hf_resnet", "torch", "torchvision", "transformers", "huggingface_hub")
#: Gradio version a Space gets when the pushing machine has none installed (the [demo] extra's floor).
FALLBACK_GRADIO = "5.0.0"

APP = '''"""Demo of the image classifier {repo_id}, made by `hf-resnet push --space`.

The same page as `hf-resnet demo --model {repo_id}` on your own machine.
"""

from hf_resnet.inference.demo import launch

MODEL = "{repo_id}"

if __name__ == "__main__":
    launch(MODEL)
'''

README = """---
title: {title}
emoji: 🔎
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {gradio}
app_file: app.py
models:
- {repo_id}
tags:
- image-classification
- hf_resnet
pinned: false
---

# {title}

Try the image classifier [{repo_id}](https://huggingface.co/{repo_id}): upload or paste a picture, or pick one of
the examples from its validation set, to see the top labels with calibrated scores and a Grad-CAM map of where the
model looked. Made with [hf_resnet](https://github.com/hf-resnet/hf_resnet) (`hf-resnet push --space`).
"""


def _version(name: str) -> str | None:
    try:
        return version(name).split("+")[0]  # local tags such as +cpu or +cu124 are not on PyPI
    except PackageNotFoundError:
        return None


def requirements() -> str:
    """`requirements.txt`: hf_resnet with its demo extra and the libraries it runs on, at this machine's versions.

    >>> requirements().splitlines()[0].startswith("hf_resnet[demo]==")
    True
    """
    lines = []
    for name in PINNED:
        pinned = _version(name)
        requirement = "hf_resnet[demo]" if name == "hf_resnet" else name
        lines.append(f"{requirement}=={pinned}" if pinned else requirement)
    return "\n".join(lines) + "\n"


def space_files(repo_id: str, space_id: str) -> dict[str, bytes]:
    """`{path in Space: content}` for `app.py`, `requirements.txt` and the Space's `README.md`.

    The Space loads the model repo's main branch.

    >>> sorted(space_files("me/beans", "me/beans-demo"))
    ['README.md', 'app.py', 'requirements.txt']
    """
    title = space_id.split("/")[-1]
    return {
        "app.py": APP.format(repo_id=repo_id).encode(),
        "requirements.txt": requirements().encode(),
        "README.md": README.format(
            title=title, repo_id=repo_id, gradio=_version("gradio") or FALLBACK_GRADIO
        ).encode(),
    }
