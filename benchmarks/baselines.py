"""Is the hierarchical model worth it? NotaGen against two flat baselines, on equal terms.

    python benchmarks/baselines.py                       # tiny preset, the main job's corpus and M3
    python benchmarks/baselines.py --pretrain_steps 50 --finetune_steps 50 --num_pieces 8   # a quick look

For each model (notagen, abc_gpt2, folk_rnn; `--preset` gives each NotaGen's parameter count) the
real stage scripts run with the same settings: pre-training on the corpus's pre-training set,
fine-tuning with prompt lines, `inference/inference.py` (same prompt, seed and sampling, the bar
check on) and `clamp2/evaluate.py` against the held-out reference pieces. Then one table:
- eval loss in nats per ABC character: the summed negative log-likelihood of the fine-tuning eval
  windows (original keys) over their characters, so the three designs are measured on the same text;
- usable share, CLaMP 2 score, composer adherence (top-5), critic AUC (the evaluation report);
- training speed: seconds per optimizer step, measured in this process on the same batches of
  fine-tuning windows for every model (fresh weights, one thread), as a ratio to NotaGen's;
- generation speed: characters per second of the inference run (the bar check's rewrites included).
Every step is skipped when an earlier run of this benchmark finished it (markers under
`--out_dir`/<model>/steps), so an interrupted benchmark continues. Needs the corpus and the M3
weights of the main job (`bash run.sh`).
"""
from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from main import run, weights_in  # noqa: E402  (the main job's resumable step runner)
from notagen.baselines import MODEL_TYPES, flat_ids  # noqa: E402
from notagen.checkpoint import load_model  # noqa: E402
from notagen.data import NotaGenDataset, collate_patches  # noqa: E402


def arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODEL_TYPES), help="comma list of model types")
    parser.add_argument("--preset", default="tiny", help="NotaGen preset whose parameter count every model gets")
    parser.add_argument("--corpus_dir", default="corpus", help="the embedded corpus (data/build_corpus.py)")
    parser.add_argument("--clamp2_weights_path", default="runs/main/m3/weights_m3.pth", help="M3 weights for the evaluation")
    parser.add_argument("--out_dir", default="runs/baselines")
    parser.add_argument("--pretrain_steps", type=int, default=200)
    parser.add_argument("--finetune_steps", type=int, default=400)
    parser.add_argument("--learning_rate", type=float, default=2e-3, help="peak learning rate (cosine decay), both stages")
    parser.add_argument("--num_pieces", type=int, default=32, help="pieces generated per model")
    parser.add_argument("--prompt", default="Baroque|Bach, Johann Sebastian|Choral")
    parser.add_argument("--reference", default="bach_chorales", help="reference set under <corpus>/reference/")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (the main job's)")
    parser.add_argument("--parallel", type=int, default=2, help="models trained at once (one CPU thread each)")
    return parser.parse_args(argv)


def pipeline(model_type: str, args) -> dict:
    """Train, generate and evaluate one model with the stage scripts; returns its table row."""
    corpus, out = REPO / args.corpus_dir, REPO / args.out_dir / model_type
    out.mkdir(parents=True, exist_ok=True)
    log = out / "log.txt"
    common = ["--batch_size", "4", "--lr_schedule", "cosine", "--warmup_steps", "30", "--num_epochs", "1000",
              "--learning_rate", str(args.learning_rate), "--progress_bar", "false", "--num_threads", "1"]
    run("pretrain", ["pretrain/train-gen.py", "--model", model_type, "--preset", args.preset, *common,
                     "--data_train_index_path", str(corpus / "pretrain/augmented_train.jsonl"),
                     "--data_eval_index_path", str(corpus / "pretrain/augmented_eval.jsonl"),
                     "--max_steps", str(args.pretrain_steps), "--output_dir", str(out / "pretrain")],
        out, out / "pretrain", log=log)
    run("finetune", ["finetune/train-gen.py", "--pretrained_path", str(weights_in(out / "pretrain")), *common,
                     "--data_train_index_path", str(corpus / "finetune/augmented_train.jsonl"),
                     "--data_eval_index_path", str(corpus / "finetune/augmented_eval.jsonl"),
                     "--max_steps", str(args.finetune_steps), "--output_dir", str(out / "finetune")],
        out, out / "finetune", log=log)
    weights = weights_in(out / "finetune")
    run("inference", ["inference/inference.py", "--inference_weights_path", str(weights), "--prompt", args.prompt,
                      "--num_samples", str(args.num_pieces), "--batch_size", "8", "--seed", "0",
                      "--temperature", str(args.temperature), "--max_chars", "6000", "--stream", "false",
                      "--num_threads", "1", "--output_dir", str(out / "inference")], out, log=log)
    run("evaluate", ["clamp2/evaluate.py", "--generated_dir", str(out / "inference"),
                     "--reference_dir", str(corpus / "reference" / args.reference),
                     "--clamp2_weights_path", args.clamp2_weights_path,
                     "--style_train_dir", str(corpus / "finetune/interleaved"),
                     "--eval_output_dir", str(out / "evaluation")], out, log=log)
    return table_row(model_type, weights, out, corpus)


@torch.no_grad()
def nats_per_char(model, index_path: Path) -> float:
    """Summed NLL of the eval windows (original keys; the data's seeded stream cuts, the same for
    every model) over the characters predicted. NotaGen's sum also pays for its chunk-end markers
    and EOS patch, which are not characters: a fair price for the text, as the flat models pay for EOS."""
    data = NotaGenDataset(index_path, patch_size=model.config.patch_size, patch_length=model.config.patch_length,
                          key_mode="original", require_prompt_lines=True)
    total, chars = 0.0, 0
    for start in range(0, len(data), 4):
        sequences = [data[i] for i in range(start, min(start + 4, len(data)))]
        batch = collate_patches(sequences)
        total -= model.sequence_logp(batch["patches"], batch["masks"]).sum().item()
        chars += sum(len(flat_ids(s.tolist())) - 1 for s in sequences)  # every char after BOS is predicted
    return total / chars


def step_seconds(models: list[str], preset: str, index_path: Path, batches: int = 4) -> dict[str, float]:
    """Median seconds of a training step (forward, backward, AdamW) of each model type on the same
    `batches` batches of 4 windows; one thread, fresh weights, one warm-up step."""
    import statistics
    import time

    from notagen.training.stages import stage_model
    from types import SimpleNamespace

    torch.set_num_threads(1)
    data = NotaGenDataset(index_path, patch_length=256, require_prompt_lines=True)
    seconds = {}
    for model_type in models:
        torch.manual_seed(0)
        model = stage_model(SimpleNamespace(model=model_type, preset=preset), None).train()
        data.patch_length = model.config.patch_length
        chosen = [collate_patches([data[4 * b + i] for i in range(4)]) for b in range(batches)]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        times = []
        for batch in chosen[:1] + chosen:  # the first is a warm-up
            started = time.perf_counter()
            model(batch["patches"], batch["masks"]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - started)
        seconds[model_type] = statistics.median(times[1:])
    return seconds


def table_row(model_type: str, weights: Path, out: Path, corpus: Path) -> dict:
    model = load_model(weights)
    [summary] = (out / "inference" / "summary").glob("*.json")
    generation = json.loads(summary.read_text())
    report = json.loads((out / "evaluation" / "report.json").read_text())
    style = report["style"]  # empty when no piece was usable
    classifier = style.get("classifier") or {}
    return {
        "model": model_type, "description": model.config.describe(),
        "parameters": sum(p.numel() for p in {p.data_ptr(): p for p in model.parameters()}.values()),  # tied once
        "eval_nats_per_char": round(nats_per_char(model, corpus / "finetune/augmented_eval.jsonl"), 4),
        "finished": report["validity"]["finished"], "converted": report["validity"]["converted"],
        "usable": report["validity"]["usable"], "bar_alignment": report["validity"]["bar_alignment"],
        "clamp2_score": style.get("clamp2_score"), "critic_auc": style.get("critic_auc"),
        "adherence_top5": classifier.get("adherence_top5"), "adherence_chance_top5": classifier.get("chance_top5"),
        "generation_chars_per_second": round(sum(p["chars"] for p in generation["pieces"])
                                             / generation["generation_seconds"], 1),
        "summary": report["summary"],
    }


def markdown(rows: list[dict]) -> str:
    def number(value, spec):  # "-": not measured (no usable piece; a critic needs two)
        return "-" if value is None or value != value else format(value, spec)

    lines = ["| model | parameters | eval nats/char | finished / converts | usable | bar alignment | CLaMP 2 score | "
             "adherence top-5 (chance) | critic AUC | training step (vs NotaGen) | generation chars/s |", "|---" * 11 + "|"]
    for r in rows:
        lines.append(f"| {r['model']} ({r['description'].split(', ', 1)[-1] if r['model'] != 'notagen' else r['description']}) | {r['parameters'] / 1e6:.2f}M | "
                     f"{r['eval_nats_per_char']:.3f} | {r['finished']:.0%} / {r['converted']:.0%} | "
                     f"{r['usable']:.0%} | {r['bar_alignment']:.0%} | "
                     f"{number(r['clamp2_score'], '.3f')} | {number(r['adherence_top5'], '.0%')} "
                     f"({number(r['adherence_chance_top5'], '.0%')}) | {number(r['critic_auc'], '.2f')} | "
                     f"{r['step_seconds']:.2f} s ({r['step_ratio']:.2f}x) | {r['generation_chars_per_second']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = arguments(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODEL_TYPES))
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_TYPES)}")
    for needed in (REPO / args.corpus_dir / "pretrain/augmented_train.jsonl", REPO / args.clamp2_weights_path):
        if not needed.exists():
            raise SystemExit(f"{needed} not found: run the main job first (bash run.sh) or give its path")
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        rows = list(pool.map(lambda m: pipeline(m, args), models))  # models in the order given (slowest first pays)
    rows.sort(key=lambda row: MODEL_TYPES.index(row["model"]))
    seconds = step_seconds([row["model"] for row in rows], args.preset, REPO / args.corpus_dir / "finetune/augmented_train.jsonl")
    baseline = seconds.get("notagen", next(iter(seconds.values())))
    for row in rows:
        row["step_seconds"], row["step_ratio"] = round(seconds[row["model"]], 3), round(seconds[row["model"]] / baseline, 2)
    out = REPO / args.out_dir
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    (out / "table.md").write_text(table + "\n")
    print(f"\n{args.preset} preset, {args.pretrain_steps} + {args.finetune_steps} steps, {args.num_pieces} pieces "
          f"each, prompt {args.prompt}, T {args.temperature}\n{table}\nresults: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
