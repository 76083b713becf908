"""The main job on the embedded default: music21's corpus and OpenScore -> pre-train -> fine-tune -> generate -> CLaMP-DPO.

`bash run.sh` runs this after installing (about an hour on 2 CPU cores); `bash run.sh quick` (or
`python main.py --quick true`) runs every step at a toy size in a few minutes, into runs/quick/.
`python main.py --help` lists the settings below, each overridable as `--name value`. Every step
runs the real stage script (as a user would) and is skipped when an earlier run finished it with the
same settings, so an interrupted job continues where it stopped; a finished step asked for with
other settings stops the job with one line (`--fresh true` starts the runs over; the corpus is
kept). Defaults suit a 2-core CPU; a GPU is used where there is one.
"""
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from notagen.abc.corpus import write_mixed_index
from notagen.io import atomic_write_text

REPO = Path(__file__).resolve().parent

CORPUS_DIR = "corpus"  # where data/build_corpus.py writes the embedded corpus
CORPUS_MAX_PIECES = 100  # pieces per training set (0 = every piece of the embedded corpus, music21 and OpenScore, that converts)
OPENSCORE = False  # add the OpenScore Lieder and String Quartets (data/openscore/) to the corpus; off: the job's CLaMP-DPO chain targets Bach chorales, and with them the pieces beside the chorales are mostly songs
FOCUS_PIECES = 400  # extra fine-tuning pieces of PROMPT's style (Bach chorales), so a tiny model learns to write it
RUNS_DIR = "runs/main"  # weights, generated pieces and logs of this job
FRESH = False  # start the runs over (the corpus is kept)
QUICK = False  # every step at a toy size (a few minutes on 2 cores, runs/quick/): shows the whole pipeline, not music worth keeping
DEVICE = "auto"  # device of generation and CLaMP-DPO: auto (cuda, then mps, then cpu), cpu, cuda; training uses a GPU where there is one
NUM_THREADS = 1  # CPU threads for torch (1 avoids oversubscription when anything else uses the CPU)
BATCH_SIZE = 4  # pieces per training batch
PRETRAIN_STEPS = 450  # optimizer steps of tiny pre-training
PRETRAIN_LEARNING_RATE = 2e-3  # peak learning rate of pre-training (cosine decay)
FINETUNE_FROM = ""  # checkpoint fine-tuning starts from ("" = this job's pre-training; --quick: the shipped checkpoint, whose pieces are usable after a few steps)
FINETUNE_STEPS = 800  # optimizer steps of fine-tuning with prompt lines
FINETUNE_LEARNING_RATE = 1e-3  # peak learning rate of fine-tuning (cosine decay)
FOCUS_FINETUNE_STEPS = 1700  # then fine-tune on PROMPT's pieces alone for this many steps (0 = skip): the chorale model of the inference step and of the demo without a shipped checkpoint
PROMPT = "Baroque|Bach, Johann Sebastian|Choral"  # period|composer|instrumentation to generate (and to optimise with RL)
NUM_PIECES = 8  # pieces generated from the fine-tuned model at the end of training
TEMPERATURE = 1.0  # sampling temperature of every generation step (the published 1.2 suits a far stronger model; the tiny one writes few usable pieces at it)
MAX_CHARS = 6000  # a generated piece stops (as failed, partial text kept) past this many characters
RL = True  # CLaMP-DPO: RL_ITERATIONS iterations from a model that has seen little of PROMPT's style, toward its held-out real pieces, with the before/after table
RL_START_FOCUS_PIECES = 20  # pieces of PROMPT in the set the model CLaMP-DPO starts from is fine-tuned on last (beside the round robin over the other prompts), so it starts far from the target
RL_START_STEPS = 300  # fine-tuning steps of that model, from the fine-tuned weights (before the focus fine-tuning): their bars hold, so most of its pieces are usable
M3_STEPS = 150  # optimizer steps of the tiny M3 feature extractor
RL_ITERATIONS = 3  # CLaMP-DPO iterations; every model of the chain generates RL_SAMPLES pieces and is scored
RL_SAMPLES = 1024  # pieces generated per model (published 1,000): fewer leave standard errors that hide a real gain
RL_GENERATION_BATCH_SIZE = 64  # pieces generated together during CLaMP-DPO
RL_BAR_RETRIES = 32  # bar-checked generation during CLaMP-DPO (the start model un-interleaves few pieces without it; the pairs then compare styles, not broken bars)
RL_HEADER_RETRIES = 0  # header lines are not checked during CLaMP-DPO (inference checks them): with the check the start model starts closer to the target and leaves the chain less room (docs/clamp2.md)
RL_MAX_PATCHES = 1200  # a piece written during CLaMP-DPO fails past this many patches, rewritten lines included (about 3x the longest piece MAX_CHARS allows): one piece cannot hold up a batch for many minutes
RL_PORTION = 0.1  # share of usable pieces chosen / rejected (published 0.1)
RL_COPY_THRESHOLD = 0.0  # 0 = calibrated on the reference set: the tiny M3 puts distinct chorales above the published 0.95
RL_REJECTED_USABLE_SHARE = 0.5  # half of the rejected pieces are the lowest-scoring well-formed ones, half the lowest of all: once the model stops writing broken pieces the pairs still teach style (0 = published)
RL_STEPS = 200  # DPOP optimizer steps per iteration (each pair drawn at most once)
RL_LEARNING_RATE = 1e-6  # DPOP learning rate (published 1e-6 for 516M parameters); from this start model a larger one overshoots the real chorales' score by the third iteration and makes the pieces alike (docs/clamp2.md)
RL_BETA = 0.1  # DPOP beta (published 0.1)
RL_NUM_PROCESSES = 2  # CPU processes of the CLaMP-DPO chain, NUM_THREADS torch threads each: each writes half of every model's pieces, and each DPOP step takes one pair on each (one process per core: the chain's time is mostly generation)
RL_SEED = 0  # seed of CLaMP-DPO's generation and pair order; its runs go to rl/ (seed 0) or rl_seed<N>/
EVAL_PIECES = 200  # pieces of each model's CLaMP-DPO generation that clamp2/evaluate.py reports on (0 = skip)


class StepChanged(ValueError):
    """A finished step asked for again with other settings."""


def step_marker(runs: Path, step: str) -> Path:
    return runs / "steps" / f"{step}.done"


def portable(args: list[str]) -> list[str]:
    """A step's arguments as its marker records them: paths inside the checkout relative to it, so a
    moved checkout still matches its finished steps."""
    return [arg.replace(f"{REPO}/", "") for arg in args]


def finished_earlier(step: str, args: list[str], runs: Path) -> bool:
    """True when an earlier job finished `step` with these very `args`; StepChanged when it finished
    it with others (its result is never reused for other settings, nor silently replaced)."""
    marker = step_marker(runs, step)
    if not marker.exists():
        return False
    try:
        recorded = json.loads(marker.read_text()).get("args")
    except (json.JSONDecodeError, AttributeError):  # a marker of a job that recorded no settings
        recorded = None
    if recorded is None:
        print(f"== {step}: done earlier, skipped ({marker}; that job did not record its settings)")
        return True
    if recorded != portable(args):
        changed = [f"{name} {old} -> {new}" for name, old, new in changed_settings(recorded, portable(args))]
        raise StepChanged(f"step {step} finished earlier in {runs} with other settings "
                          f"({', '.join(changed) or 'other arguments'}); to run it again, start over with "
                          f"--fresh true (the corpus is kept) or give another --runs_dir")
    print(f"== {step}: done earlier with the same settings, skipped ({marker})")
    return True


def changed_settings(old: list[str], new: list[str]) -> list[tuple[str, str, str]]:
    """(--name, old value, new value) for each `--name value` pair that differs between two command lines."""
    def pairs(args):
        return {name: value for name, value in zip(args, args[1:]) if name.startswith("--")}
    before, after = pairs(old), pairs(new)
    return [(name, before.get(name, "(unset)"), after.get(name, "(unset)"))
            for name in dict.fromkeys([*before, *after]) if before.get(name) != after.get(name)]


def run(step: str, args: list[str], runs: Path, output_dir: Path | None = None, log: Path | None = None) -> None:
    """Run one stage script unless an earlier job finished it with the same arguments; a training
    step that an earlier job left unfinished in `output_dir` continues from its checkpoint.
    `log`: append its output there. The step's marker records its arguments."""
    if finished_earlier(step, args, runs):
        return
    command = args
    if output_dir is not None and any(output_dir.glob("resume_*.pth")):
        command = [*args, "--load_from_checkpoint", "true"]
    elif output_dir is not None and output_dir.is_dir():  # killed before its first checkpoint
        command = [*args, "--overwrite", "true"]
    print(f"== {step}: python {' '.join(command)}", flush=True)
    started = time.monotonic()
    if log is None:
        subprocess.run([sys.executable, *command], cwd=REPO, check=True)
    else:
        with open(log, "a") as output:
            subprocess.run([sys.executable, *command], cwd=REPO, check=True, stdout=output, stderr=subprocess.STDOUT)
    marker = step_marker(runs, step)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"seconds": round(time.monotonic() - started, 1), "args": portable(args)}) + "\n")
    print(f"== {step}: finished in {time.monotonic() - started:.0f} s", flush=True)


def weights_in(folder: Path) -> Path:
    found = sorted(folder.glob("weights_*.pth"))
    if not found:
        raise FileNotFoundError(f"no weights_*.pth in {folder}")
    return found[0]


# --quick: each of these replaces the constant above (settings given on the command line still win)
_QUICK_SETTINGS = {
    "runs_dir": "runs/quick", "corpus_dir": "runs/quick/corpus", "corpus_max_pieces": 20, "focus_pieces": 20,
    "pretrain_steps": 40, "finetune_from": "weights/embedded", "finetune_steps": 20, "finetune_learning_rate": 2e-4, "focus_finetune_steps": 0,
    "num_pieces": 2, "rl_start_focus_pieces": 5, "rl_start_steps": 10, "m3_steps": 20, "rl_iterations": 1,
    "rl_samples": 32, "rl_generation_batch_size": 16, "rl_steps": 10, "eval_pieces": 0,
}


def quick_argv(argv: list[str]) -> list[str]:
    """The command line of a --quick job: the quick settings first, so that `argv`'s own win."""
    return [*(item for name, value in _QUICK_SETTINGS.items() for item in (f"--{name}", str(value))), *argv]


def main(cfg) -> None:
    runs = REPO / cfg.runs_dir
    if cfg.fresh and runs.exists():
        shutil.rmtree(runs)
    corpus = REPO / cfg.corpus_dir
    threads = ["--num_threads", str(cfg.num_threads)]
    started = time.monotonic()
    run("corpus", ["data/build_corpus.py", "--out_dir", str(corpus), "--max_pieces", str(cfg.corpus_max_pieces),
                   "--focus_prompt", cfg.prompt, "--focus_pieces", str(cfg.focus_pieces),
                   *([] if cfg.openscore else ["--openscore_folder", ""])], runs)
    # settings of every training run; fine-tuning takes its sizes from the pre-trained file
    training = ["--batch_size", str(cfg.batch_size), "--lr_schedule", "cosine",
                "--warmup_steps", "30", "--num_epochs", "1000", "--progress_bar", "true", *threads]
    run("pretrain", ["pretrain/train-gen.py", "--preset", "tiny", *training,
                     "--data_train_index_path", str(corpus / "pretrain/augmented_train.jsonl"),
                     "--data_eval_index_path", str(corpus / "pretrain/augmented_eval.jsonl"),
                     "--learning_rate", str(cfg.pretrain_learning_rate), "--max_steps", str(cfg.pretrain_steps),
                     "--output_dir", str(runs / "pretrain")], runs, runs / "pretrain")
    run("finetune", ["finetune/train-gen.py", *training,
                     "--pretrained_path", str(REPO / cfg.finetune_from if cfg.finetune_from else weights_in(runs / "pretrain")),
                     "--data_train_index_path", str(corpus / "finetune/augmented_train.jsonl"),
                     "--data_eval_index_path", str(corpus / "finetune/augmented_eval.jsonl"),
                     "--learning_rate", str(cfg.finetune_learning_rate), "--max_steps", str(cfg.finetune_steps),
                     "--output_dir", str(runs / "finetune")], runs, runs / "finetune")
    finetuned = weights_in(runs / "finetune")
    if cfg.focus_finetune_steps > 0:
        run("finetune_focus", ["finetune/train-gen.py", *training, "--pretrained_path", str(finetuned),
                               "--data_train_index_path", str(corpus / "finetune/augmented_focus_train.jsonl"),
                               "--data_eval_index_path", str(corpus / "finetune/augmented_focus_eval.jsonl"),
                               "--learning_rate", str(cfg.finetune_learning_rate),
                               "--max_steps", str(cfg.focus_finetune_steps),
                               "--output_dir", str(runs / "finetune_focus")], runs, runs / "finetune_focus")
        finetuned = weights_in(runs / "finetune_focus")
    run("inference", ["inference/inference.py", "--inference_weights_path", str(finetuned),
                      "--num_samples", str(cfg.num_pieces), "--batch_size", str(cfg.num_pieces),
                      "--prompt", cfg.prompt, "--seed", "0", "--temperature", str(cfg.temperature),
                      "--max_chars", str(cfg.max_chars),
                      "--output_dir", str(runs / "inference"), "--stream", "false", *threads], runs)
    if cfg.rl:
        # CLaMP-DPO starts from a model that has somewhere to go: the fine-tuned model, fine-tuned
        # again on the round robin over the other prompts plus only RL_START_FOCUS_PIECES chorales
        start_data = runs / "rl_start_data"
        write_mixed_index(corpus / "finetune", cfg.rl_start_focus_pieces, start_data)
        run("rl_start", ["finetune/train-gen.py", *training, "--pretrained_path", str(weights_in(runs / "finetune")),
                         "--data_train_index_path", str(start_data / "train.jsonl"),
                         "--data_eval_index_path", str(start_data / "eval.jsonl"),
                         "--learning_rate", str(cfg.finetune_learning_rate), "--max_steps", str(cfg.rl_start_steps),
                         "--output_dir", str(runs / "rl_start")], runs, runs / "rl_start")
        # M3 learns from the fine-tuning pieces: mostly chorales, so its features tell chorales apart
        run("m3", ["clamp2/train-m3.py", "--preset", "tiny", "--train_dir", str(corpus / "finetune/interleaved"),
                   "--output_dir", str(runs / "m3"), "--max_steps", str(cfg.m3_steps), "--num_epochs", "1000",
                   "--batch_size", "8", "--learning_rate", "1e-3", "--warmup_steps", "20",
                   "--decoder_patch_sample", "32", *threads], runs, runs / "m3")
        try:
            run_clamp_dpo(cfg, runs, corpus, weights_in(runs / "rl_start"))
        except subprocess.CalledProcessError:
            print("\n== clamp_dpo: a CLaMP-DPO iteration stopped (its reason is printed above); the "
                  "models and pieces made so far are kept, and the next run continues from there.")
    print(f"\nmain job finished in {(time.monotonic() - started) / 60:.1f} min; everything is under {runs}")
    print(f"  fine-tuned weights: {finetuned}")
    print(f"  generated pieces:   {runs / 'inference'} (original/ ABC, interleaved/ ABC, xml/ MusicXML, midi/ MIDI)")
    loop_dir = runs / rl_folder(cfg.rl_seed)
    if (loop_dir / "scores.json").exists():
        rows = json.loads((loop_dir / "scores.json").read_text())
        for row in rows:
            if "evaluation" in row:
                print(f"  {row['label'] + ':':19} {row['evaluation']}")
        print(f"  CLaMP-DPO scores:   {loop_dir / 'scores.json'} and {loop_dir / 'scores.png'}")
        print("  mean CLaMP 2 score of fresh pieces (same seed, extractor and reference set): "
              + " -> ".join(f"{row['label']} {row['mean_score']:.4f} +- {row.get('sem', float('nan')):.4f} "
                            f"({row['pieces']} usable of {cfg.rl_samples})" for row in rows))


def rl_folder(seed: int) -> str:
    """The CLaMP-DPO loop's folder under the job's runs: rl/ for seed 0, rl_seed<N>/ for another."""
    return "rl" if seed == 0 else f"rl_seed{seed}"


def clamp_dpo_args(cfg, runs: Path, corpus: Path, start: Path) -> list[str]:
    """RL/loop.py's command line for the job's CLaMP-DPO chain (also read by benchmarks/chain_batch.py)."""
    return [
        "RL/loop.py", "--iterations", str(cfg.rl_iterations), "--loop_dir", str(runs / rl_folder(cfg.rl_seed)),
        "--weights_path", str(start), "--clamp2_weights_path", str(runs / "m3/weights_m3.pth"),
        "--reference_dir", str(corpus / "reference/bach_chorales"), "--prompt", cfg.prompt,
        "--num_samples", str(cfg.rl_samples), "--generation_batch_size", str(cfg.rl_generation_batch_size),
        "--temperature", str(cfg.temperature), "--max_chars", str(cfg.max_chars),
        "--bar_retries", str(cfg.rl_bar_retries), "--header_retries", str(cfg.rl_header_retries), "--max_patches", str(cfg.rl_max_patches), "--portion", str(cfg.rl_portion),
        "--copy_threshold", str(cfg.rl_copy_threshold), "--rejected_usable_share", str(cfg.rl_rejected_usable_share),
        "--seed", str(cfg.rl_seed),
        "--optimization_steps", str(cfg.rl_steps), "--learning_rate", str(cfg.rl_learning_rate),
        "--beta", str(cfg.rl_beta), "--batch_size", "1", "--save_every_steps", "20", "--device", cfg.device,
        "--num_threads", str(cfg.num_threads), "--num_processes", str(rl_processes(cfg)),
        "--eval_pieces", str(cfg.eval_pieces), "--style_train_dir", str(corpus / "finetune/interleaved"),
        "--copy_source_index", str(corpus / "finetune/augmented_train.jsonl")]  # copies of every chorale the start model saw too


def rl_processes(cfg) -> int:
    """Processes of the CLaMP-DPO chain: one per GPU where the chain runs on CUDA, else RL_NUM_PROCESSES."""
    from notagen.generation.setup import resolve_device

    if resolve_device(cfg.device).type == "cuda":
        import torch

        return torch.cuda.device_count()
    return cfg.rl_num_processes


def run_clamp_dpo(cfg, runs: Path, corpus: Path, start: Path) -> None:
    folder = rl_folder(cfg.rl_seed)
    run("clamp_dpo" + folder.removeprefix("rl"), clamp_dpo_args(cfg, runs, corpus, start), runs)  # clamp_dpo, clamp_dpo_seed<N>


if __name__ == "__main__":
    from notagen.settings import parse_settings, run_stage

    settings = parse_settings(Path(__file__), description=__doc__)
    if settings.quick:
        settings = parse_settings(Path(__file__), quick_argv(sys.argv[1:]), description=__doc__)
    sys.exit(run_stage(main, settings))
