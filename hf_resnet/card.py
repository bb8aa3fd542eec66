"""The model card: a pure function of a finished output folder.

Reading everything from the folder (not from live training objects) means the card written
at the end of training and the one re-made by `hf-resnet push` after a crash are the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_model_card(output_dir: str | Path) -> Path:
    """Write `README.md` in `output_dir` from `config.json`, `recipe.json` and the results files.

    >>> write_model_card("outputs/beans")  # doctest: +SKIP
    PosixPath('outputs/beans/README.md')
    """
    output_dir = Path(output_dir)
    config = _read_json(output_dir / "config.json")
    recipe = _read_json(output_dir / "recipe.json")
    results = _read_json(output_dir / "all_results.json")
    labels = [config["id2label"][str(i)] for i in range(len(config.get("id2label", {})))]
    base_model = recipe.get("model", {}).get("model_name_or_path")
    dataset = recipe.get("dataset")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=base_model if base_model and not Path(base_model).exists() else None,
        datasets=[dataset] if dataset and "/" in dataset and not Path(dataset).exists() else None,
        tags=["image-classification", "resnet", "hf_resnet"],
    )
    metrics = "\n".join(f"| {key} | {value:.4g} |" for key, value in sorted(results.items()) if isinstance(value, float))
    body = f"""
# {output_dir.name}

A ResNet image classifier fine-tuned with [hf_resnet](https://github.com/hf-resnet/hf_resnet).

- Base model: {base_model or "trained from scratch (" + str(recipe.get("model", {}).get("arch")) + ")"}
- Dataset: {dataset}
- Labels ({len(labels)}): {", ".join(labels)}

## Recipe

```json
{json.dumps(recipe.get("recipe", {}), indent=2)}
```

## Results

| metric | value |
| --- | --- |
{metrics}

## Use

```python
import hf_resnet
hf_resnet.classify("image.jpg", model="{output_dir}")
```
"""
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")
    path = output_dir / "README.md"
    card.save(path)
    return path
