"""Save a checkpoint as a folder in the Hugging Face style: config.json + model.safetensors +
prompts.txt + README.md (model card), loadable wherever a .pth file is (`load_model`, inference,
the demo, fine-tuning, CLaMP-DPO).

    python weights/export.py --weights_path runs/finetune --output_dir my_model
    python weights/export.py --output_dir notagen-shipped     # the shipped checkpoint, with its card

Settings are the constants below, each overridable as `--name value`.
"""
import sys
from pathlib import Path

from notagen.checkpoint import save_pretrained
from notagen.generation.setup import default_prompt_list
from notagen.paths import resolve_output_dir, resolve_weights_path
from notagen.settings import parse_settings, run_stage

WEIGHTS_PATH = ""  # checkpoint to export: a .pth file, a folder holding one, or a checkpoint folder ("" = the shipped one)
OUTPUT_DIR = "runs/exported"  # the folder to write (it must not exist, unless OVERWRITE)
PROMPTS = ""  # the prompts.txt to put beside the weights ("" = the one next to the weights, if any)
CARD = ""  # a model card (Markdown) to use as README.md ("" = a README.md next to the weights, else a short generated card)
OVERWRITE = False  # replace OUTPUT_DIR when it exists


def main(cfg) -> int:
    weights = resolve_weights_path(cfg.weights_path)
    prompts = Path(cfg.prompts) if cfg.prompts else default_prompt_list(weights)
    if prompts is not None and prompts.parent != weights.parent and not cfg.prompts:
        prompts = None  # the demo's list of another model is not this model's
    card = Path(cfg.card) if cfg.card else weights.parent / "README.md"
    if not card.is_file() and weights.parent.name == "embedded":
        card = weights.parent.parent / "README.md"  # the shipped checkpoint's card is weights/README.md
    folder = save_pretrained(weights, resolve_output_dir(cfg.output_dir), prompts=prompts,
                             card=card.read_text() if card.is_file() else "", overwrite=cfg.overwrite)
    print(f"exported {weights.name} -> {folder}/ ({', '.join(sorted(p.name for p in folder.iterdir()))})")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, parse_settings(Path(__file__), description=__doc__)))
