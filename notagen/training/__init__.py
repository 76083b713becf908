"""One training loop for every stage: any model whose forward returns `.loss`, on `accelerate`.

    result = train(model, train_dataset, eval_dataset, collate_fn, TrainConfig(...))

The same code runs as `python script.py` (one device) and under
`accelerate launch [--multi_gpu|--cpu --num_processes N] [--mixed_precision bf16] script.py`.

Design choices
- Data parallel through accelerate (DDP, gloo on CPU). The data is split by our own
  `ShardedSampler` (DistributedSampler-style: a seeded permutation per epoch, padded to a multiple
  of the process count, every process a disjoint stride) and batches are moved to the device by
  hand: the DataLoader is *not* passed to `accelerator.prepare`, which would shard it a second
  time. The sampler can start mid-epoch, so a resumed run reads exactly the batches that an
  uninterrupted one would, without loading the skipped ones.
- Gradient accumulation by hand: `accelerator.no_sync` on all but the last micro-batch of a
  group, so DDP all-reduces once per optimizer step. A short last group of an epoch is averaged
  over its own size. Then gradient clipping, optimizer step, scheduler step (warm-up, then
  constant, linear or cosine). The scheduler is not given to `accelerator.prepare`, which would
  step it once per process.
- Mixed precision (bf16/fp16) is accelerate's autocast (+ GradScaler for fp16); weights stay fp32.
- Checkpoints (written atomically by rank 0, after every process has contributed its RNG state):
  * best file `<weights_name>`: the published layout (model, optimizer, lr_sched, epoch,
    best_epoch, min_eval_loss) + config, written when the eval loss improves (train loss when
    there is no eval set);
  * resume file `<resume_name>`: the same plus the step within the epoch, the global step, the
    running epoch loss, the GradScaler, and the python/numpy/torch(/cuda) RNG states of every
    process. Written every `save_every_steps` optimizer steps, at each epoch end and at `max_steps`.
  `load_from_checkpoint` continues from the resume file step-exactly (same per-step losses and
  final weights as an uninterrupted run); without one it falls back to the best file and
  continues after its epoch, as the published code does.
- RNG: data randomness should come from the dataset itself (see notagen.data: per example, seeded
  by seed/epoch/index); the DataLoader gets its own generator per epoch, so creating a loader never
  draws from the global RNG that dropout uses.
- Logging: tqdm on the main process, a text log (`<log_name>`), a JSON-lines step log next to it
  (`<log stem>.steps.jsonl`: step, epoch, loss, per-process losses, lr, grad norm), and
  accelerate's trackers when `report_to` names them (tensorboard / wandb; never required).
  Warnings of the `notagen` loggers (e.g. skipped data files) also go to the text log.

Where things are
    settings.py     TrainConfig (typed, with help text), TrainState, TrainResult
    parts.py        accelerator, seeds and RNG states, ShardedSampler, schedule, RunLogger
    checkpoints.py  resume and best-weights files, the guard against replacing a run
    loop.py         train() in phases: setup, epoch, optimizer step, epoch end, finish
    stages.py       the NotaGen stages (`pretrain/`, `finetune/`): settings -> model, data, train()
The parts are reused by the other trainers (M3 in notagen.clamp2, DPO in notagen.rl). `stages` is
imported by its full name (`notagen.training.stages`), not from here: the loop alone does not need
the model types, the baselines and LoRA that the stage wiring brings.
"""
from .checkpoints import (RunExistsError, adapter_path, check_output_dir, load_training_state,
                          save_model_files, save_training_state, save_weights)
from .loop import default_compute_loss, evaluate_loss, split_loss_and_metrics, train
from .parts import (RunLogger, ShardedSampler, WarmupSchedule, build_optimizer, build_scheduler,
                    capture_rng_state, make_accelerator, resolve_trackers, restore_rng_state, seed_everything)
from .settings import TrainConfig, TrainResult, TrainState

__all__ = ["RunExistsError", "RunLogger", "adapter_path", "save_model_files", "ShardedSampler", "TrainConfig", "TrainResult", "TrainState",
           "WarmupSchedule", "build_optimizer", "build_scheduler", "capture_rng_state", "check_output_dir",
           "default_compute_loss", "evaluate_loss", "load_training_state", "make_accelerator", "resolve_trackers",
           "restore_rng_state", "save_training_state", "save_weights", "seed_everything",
           "split_loss_and_metrics", "train"]
