"""The deployment table, shared by the report and the model card; no torch, so a card renders without it."""

from __future__ import annotations

#: (key in a result, column title, format) in the order shown.
_COLUMNS = (
    ("form", "form", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("agreement", "agrees with fp32", "{:.1%}"),
    ("size_mb", "size MB", "{:.3g}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("form_rss_mb", "of which the form MB", "{:.0f}"),
    ("latency_ms", "ms @1 p50", "{:.3g}"),
    ("latency_ms_p95", "ms @1 p95", "{:.3g}"),
    ("model_latency_ms", "model ms p50", "{:.3g}"),
    ("preprocess_ms", "preprocess ms", "{:.3g}"),
    ("images_per_second", "img/s @batch", "{:.0f}"),
    ("model_images_per_second", "model img/s", "{:.0f}"),
    ("first_answer_s", "first answer s", "{:.2f}"),
    ("form_first_answer_s", "of which the form s", "{:.2f}"),
)


def markdown_table(rows: list[dict]) -> str:
    """The results as a Markdown table (the report's and the model card's); a form on the Pareto front is bold."""
    lines = ["| " + " | ".join(title for _, title, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in rows:
        cells = ["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in _COLUMNS]
        if row.get("pareto"):
            cells[0] = f"**{cells[0]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def deployment_section(data: dict) -> str | None:
    """The model card's "Deployment" section from a run's deployment.json (deploy-report's copy), or None."""
    rows = data.get("results") or []
    if not rows:
        return None
    machine = data.get("machine", {})
    lines = [
        "## Deployment",
        "",
        f"Every form this model was served in, measured by `hf-resnet deploy-report` on {data.get('test_images')} "
        f"test images on {machine.get('cpu', 'a CPU')} ({machine.get('cpus', '?')} CPUs). Latency is at batch 1 "
        "with preprocessing; **bold** forms are on the accuracy-latency Pareto front.",
        "",
        markdown_table(rows),
        "",
    ]
    for notes in (data.get("notes") or {}).values():
        lines += [f"- {note}" for note in notes]
    choice = data.get("choice")
    if choice and choice.get("run") == data.get("run"):
        lines += ["", f"Chosen within the budget: **{choice['form']}**."]
    return "\n".join(lines).rstrip() + "\n"
