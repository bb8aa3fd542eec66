#!/usr/bin/env python
"""Fine-tune a ResNet image classifier.

    accelerate launch recipes/finetune.py                       # embedded default: digits, offline
    accelerate launch recipes/finetune.py --model_name_or_path microsoft/resnet-50 \
        --dataset_name beans --output_dir outputs/beans
    accelerate launch recipes/finetune.py recipes/configs/beans.yaml

Every `transformers.TrainingArguments` flag works, plus hf_resnet's own (`--help` lists them).
"""

import logging
import sys

from accelerate import PartialState

import hf_resnet


def main(argv=None) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
        level=logging.INFO,
    )
    model_args, data_args, training_args = hf_resnet.parse_args(argv)
    result = hf_resnet.run(model_args, data_args, training_args)
    # Every rank leaves the process group before exiting: tearing it down at interpreter exit instead can abort
    # ("terminate called without an active exception") on a rank that finishes first.
    PartialState().destroy_process_group()
    if result.interrupted_at is not None:
        sys.exit(130)  # the shell's code for "stopped by Ctrl-C"; the checkpoint is saved
    if training_args.should_log:
        print(
            f"\nHeld-out accuracy: {result.metrics['eval_accuracy']:.4f} on {int(result.metrics['eval_samples'])} "
            f"validation images ({', '.join(result.labels[:10])}{', ...' if len(result.labels) > 10 else ''}).\n"
            f"Model, processor, card and results: {result.output_dir}/\n"
            f"Try it: python -c \"import hf_resnet; print(hf_resnet.classify('IMAGE.png', "
            f"model='{result.output_dir}'))\""
        )


if __name__ == "__main__":
    main()
