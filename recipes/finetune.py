#!/usr/bin/env python
"""Fine-tune a ResNet image classifier: the same entry point as `hf-resnet train`.

    accelerate launch recipes/finetune.py                       # embedded default: digits, offline
    accelerate launch recipes/finetune.py --model_name_or_path microsoft/resnet-50 \\
        --dataset_name beans --output_dir outputs/beans
    accelerate launch recipes/finetune.py --config beans        # a shipped config, by name

Every `transformers.TrainingArguments` flag works, plus hf_resnet's own (`--help` lists those by subject,
`--help-all` every flag).
"""

import sys

from hf_resnet.training.cli import run_train

if __name__ == "__main__":
    sys.exit(run_train(sys.argv[1:]))
