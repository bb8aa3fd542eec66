"""`python -m hf_resnet COMMAND ...`, also `accelerate launch -m hf_resnet train ...` on many processes."""

import sys

from .cli import main

sys.exit(main())
