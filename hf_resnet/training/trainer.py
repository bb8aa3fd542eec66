"""The `Trainer` of a fine-tuning run.

`ResNetTrainer` changes only what transfer learning needs: optimizer parameter groups (head
vs backbone learning rates), batch-level mixing (mixup/cutmix) before each step, evaluation of
the weight average beside the trained weights, test-time augmentation in evaluation, and batches
made in a thread ahead of the step (`--data_overlap thread`), and a teacher's term in the training loss of a
distilled run (distill.py). Frozen
BatchNorm layers are held in eval mode by hooks set in `model.freeze`, so the Trainer's own
`model.train()` calls need no override.
"""

from __future__ import annotations

import logging

import torch
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from ..data.prefetch import GLOBAL_RNG, ThreadPrefetch, seeded
from ..families import Family
from ..model.memory_format import use_channels_last
from ..model.tta import views
from .checkpoints import AtomicCheckpoints
from .distill import Teacher
from .ema import WeightAverage
from .optim import parameter_groups

logger = logging.getLogger(__name__)

#: Every private `Trainer` method hf_resnet overrides, and why no public hook does the job (transformers 5.24).
#: pyproject.toml and constraints.txt pin the tested transformers by this list; a test keeps it complete, and an
#: upgrade that renames one of these fails it.
PRIVATE_TRAINER_OVERRIDES = {
    "_save_checkpoint": "atomic checkpoints (checkpoints.py): the Trainer writes a checkpoint's files through "
    "private helpers and calls the `on_save` callbacks only afterwards, so nothing public runs around the writing",
    "_get_output_dir": "points the writes of `_save_checkpoint`, and only those, at the staging folder: the "
    "Trainer also reads it at the end of training to prune checkpoints",
    "_get_train_sampler": "`--sampler balanced` (balance.py): `train_sampling_strategy` has no weighted choice, "
    "and the public `get_train_dataloader` would rebuild the loader through the private `_get_dataloader`",
}


class ResNetTrainer(AtomicCheckpoints, Trainer):
    """A `Trainer` with head/backbone learning-rate groups, batch mixing and atomic checkpoints.

    Its evaluations also score the weight average of a run that keeps one, and average over the test-time views
    a run asks for.
    """

    def __init__(
        self,
        *args,
        head_lr: float,
        backbone_lr: float,
        lr_decay: float = 1.0,
        batch_mix=None,
        sampler=None,
        weight_average: WeightAverage | None = None,
        tta: str = "none",
        family: Family | None = None,
        teacher: Teacher | None = None,
        **kwargs,
    ):
        self.head_lr, self.backbone_lr, self.lr_decay = head_lr, backbone_lr, lr_decay
        #: The model's family, as the run's plan resolved it: which part each parameter belongs to.
        self.family = family
        self.sampler = sampler
        self.batch_mix = batch_mix
        #: Evaluated beside the trained weights (`eval_ema_*`) while set; the run unsets it once it has chosen.
        self.weight_average = weight_average
        #: Views every evaluation averages over (model/tta.py), so metrics, temperature and thresholds
        #: are measured the way the model will be used.
        self.tta = tta
        #: A distilled run's teacher (distill.py): held here, not by the model, so DDP, the optimizer, checkpoints
        #: and the saved model never see it; each process has its own copy.
        self.teacher = teacher
        self.step_rates: dict[str, float] = {}
        #: The epoch's batch maker with `--data_overlap thread` (data/prefetch.py).
        self.prefetch: ThreadPrefetch | None = None
        #: Whether the training loop holds the generator lock now (see `get_batch_samples`).
        self.holds_rng = False
        super().__init__(*args, **kwargs)
        # Channels-last weights where safe (model/memory_format.py); training_step puts inputs in the same layout.
        wanted = getattr(self.args, "channels_last", False)
        safe = wanted and use_channels_last(self.model, self.args.device)
        self.layout = torch.channels_last if safe else torch.contiguous_format

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The trained weights' evaluation, and the weight average's beside it (`<prefix>_ema_*`) in a run with one.

        Both land in one log entry and one metrics dict, so callbacks (early stopping, the Hub
        progress push) and `trainer_state.json` see them together; the best model is still chosen
        by the trained weights' metric, since those are what a checkpoint resumes from.
        """
        arguments = (dataloader, description, prediction_loss_only, ignore_keys)
        output = self._evaluate_once(*arguments, metric_key_prefix)
        if self.weight_average is not None and self.weight_average.started:
            with self.weight_average.swapped_in():
                averaged = self._evaluate_once(*arguments, f"{metric_key_prefix}_ema")
            output.metrics.update(averaged.metrics)
        return output

    def _evaluate_once(self, dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix):
        """Evaluate the model that gets saved, and count each image once in the loss as in the other metrics.

        Each DDP rank updates its running BatchNorm statistics from its own batches after the buffers
        are broadcast, so rank 0's (the saved ones) are broadcast first. The Trainer's loss is the mean
        of per-batch means, each repeated by the first batch's size and gathered with the duplicated
        images that pad the last distributed batch; the gathered logits have each image once.
        """
        if self.args.world_size > 1:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        if logits is not None and output.label_ids is not None and self.compute_loss_func is not None:
            loss = self.compute_loss_func((torch.as_tensor(logits),), torch.as_tensor(output.label_ids))
            output.metrics[f"{metric_key_prefix}_loss"] = loss.item()
        return output

    def as_served(self) -> str:
        """Run the model from now on as `hf-resnet evaluate` and classify run the saved one; returns its precision.

        The final figures must be the saved model's: the training autocast accelerate wrapped around the model's
        forward comes off (the weights' dtype, fp32, decides), and weights and inputs go channels-last as in
        inference/prediction.py (forward passes only from here, so the layout's backward defect cannot bite).
        """
        model = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        model.to(memory_format=torch.channels_last)
        self.layout = torch.channels_last
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[next(model.parameters()).dtype]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The Trainer's step on each test-time view of the batch, logits averaged (loss: see evaluation_loop)."""
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=self.layout)
        if self.tta == "none" or "pixel_values" not in inputs:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
        steps = [
            super(ResNetTrainer, self).prediction_step(model, {**inputs, "pixel_values": view}, False, ignore_keys)
            for view in views(inputs["pixel_values"], self.tta)
        ]
        loss = torch.stack([step[0] for step in steps]).mean() if steps[0][0] is not None else None
        logits = torch.stack([step[1] for step in steps]).mean(dim=0)
        return loss, (None if prediction_loss_only else logits), steps[0][2]

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None):
        """The Trainer's `train`, with the weight average read back from the checkpoint a run resumes from."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if self.weight_average is not None and resume_from_checkpoint:
            self.weight_average.resume_from = resume_from_checkpoint
        try:
            return super().train(resume_from_checkpoint, trial, ignore_keys_for_eval)
        finally:
            self._share_rng()
            if self.prefetch is not None:  # a stopped run leaves its thread waiting to hand over a batch
                self.prefetch.close()
                self.prefetch = None

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """With `--data_overlap thread`, the epoch's batches come from a thread that makes them ahead of the step."""
        if getattr(self.args, "data_overlap", "none") == "thread":
            if self.prefetch is None or self.prefetch.source is not epoch_iterator:
                if self.prefetch is not None:
                    self.prefetch.close()
                self.prefetch = ThreadPrefetch(epoch_iterator)
            epoch_iterator = self.prefetch
        batches = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.prefetch is not None and not self.holds_rng:
            # Until the forward pass: the Trainer may restore its generator's state now (a resume), then mix.
            GLOBAL_RNG.acquire()
            self.holds_rng = True
        return batches

    def checkpoint_extras(self, folder: str) -> None:
        if self.weight_average is not None and self.weight_average.average is not None:
            self.weight_average.save(folder)

    def _get_train_sampler(self, train_dataset=None):  # private: see PRIVATE_TRAINER_OVERRIDES
        return self.sampler if self.sampler is not None else super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            groups = parameter_groups(
                model, self.head_lr, self.backbone_lr, self.lr_decay, self.args.weight_decay, self.family
            )
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def training_learning_rates(self) -> dict[str, float]:
        """`learning_rate/<part>` of each part that trains now: which parts are thawed, and at what rate."""
        rates = {}
        for group in self.optimizer.param_groups if self.optimizer is not None else []:
            if any(parameter.requires_grad for parameter in group["params"]):
                rates[f"learning_rate/{group['name'].split('/')[0]}"] = group["lr"]
        return rates

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs also get each training part's rate, so a run's schedule can be read (and compared)."""
        if "learning_rate" in logs:
            logs = {**logs, **self.step_rates}
        super().log(logs, start_time)

    def training_step(self, model, inputs, num_items_in_batch=None):
        inputs.pop("sample_seed", None)
        # Read before the optimizer step: the rates this step trains with (the scheduler moves them afterwards),
        # as the Trainer's own `learning_rate` log.
        self.step_rates = self.training_learning_rates()
        mix_seed = inputs.pop("mix_seed", None)  # a Python int: seeding never reads a value back from the GPU
        if "crops" in inputs:  # uint8 crops from the workers (--augment_on device): finish them here, in batch
            inputs["pixel_values"] = inputs.pop("crops").finish()
        inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=self.layout)
        if self.batch_mix is not None:
            # Seeded by the batch's own samples, so a resumed run mixes exactly as an uninterrupted one.
            with seeded(mix_seed):
                inputs["pixel_values"], inputs["labels"] = self.batch_mix(inputs["pixel_values"], inputs["labels"])
        self._share_rng()
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """In a distilled run's training steps, the label loss mixed with the teacher's term (distill.py).

        The teacher sees the batch as the model does (mixed, in the same layout) under the run's autocast. Its term
        goes in as the loss function of this one batch, so the Trainer scales both terms alike for gradient
        accumulation and several processes; evaluation (the model in eval mode) keeps the plain label loss.
        """
        if self.teacher is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        plain = self.compute_loss_func
        with self.accelerator.autocast():
            self.compute_loss_func = self.teacher.loss(plain, inputs["pixel_values"])
        try:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self.compute_loss_func = plain

    def _share_rng(self) -> None:
        """Let the prefetch thread seed torch's generator again: the forward pass draws nothing from it."""
        if self.holds_rng:
            GLOBAL_RNG.release()
            self.holds_rng = False
