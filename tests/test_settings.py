"""config.py settings: defaults, typed command-line overrides, help text from comments."""
import pytest

from conftest import REPO_ROOT
from notagen.settings import parse_settings

CONFIG = '''
ORI_FOLDER = "scores"  # folder of MusicXML files
EVAL_SPLIT = 0.1  # share of pieces held out (10% by default)
SEED = 0  # random seed
USE_WANDB = False  # log to Weights & Biases
WEIGHTS = None  # optional weights file
'''


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "config.py"
    path.write_text(CONFIG)
    return path


def test_defaults_come_from_config_py(config_path):
    settings = parse_settings(config_path, [])
    assert (settings.ori_folder, settings.eval_split, settings.seed, settings.use_wandb,
            settings.weights) == ("scores", 0.1, 0, False, None)


def test_overrides_are_typed_by_their_default(config_path):
    settings = parse_settings(config_path, ["--eval_split", "0.25", "--SEED", "7", "--use_wandb", "true",
                                            "--weights", "w.pth"])
    assert (settings.eval_split, settings.seed, settings.use_wandb, settings.weights) == (0.25, 7, True, "w.pth")
    with pytest.raises(SystemExit):
        parse_settings(config_path, ["--seed", "seven"])


def test_help_lists_the_comments(config_path, capsys):
    with pytest.raises(SystemExit):
        parse_settings(config_path, ["--help"])
    assert "share of pieces held out (10% by default)" in capsys.readouterr().out  # a % in help is text


def test_a_settings_file_sits_between_config_and_command_line(tmp_path, capsys):
    from notagen.settings import parse_settings

    config = REPO_ROOT / "inference" / "config.py"
    (tmp_path / "run.json").write_text('{"settings": {"top_k": 3, "temperature": 1, "prompt": "A|B|C"}}')
    (tmp_path / "run.yaml").write_text("TOP_P: 0.5\ngreedy: true\n")
    cfg = parse_settings(config, ["--config", str(tmp_path / "run.json"), "--top_k", "5"])
    assert (cfg.top_k, cfg.temperature, cfg.prompt, cfg.top_p) == (5, 1.0, "A|B|C", 0.9)
    assert isinstance(cfg.temperature, float) and not hasattr(cfg, "config")
    cfg = parse_settings(config, ["--config", str(tmp_path / "run.yaml")])
    assert cfg.top_p == 0.5 and cfg.greedy is True
    for text, message in (('{"top_k": "nine"}', "top_k must be int"), ('{"no_such": 1}', "unknown setting"),
                          ("[1, 2]", "no mapping"), ("{not json", "not a JSON or YAML")):
        (tmp_path / "bad.json").write_text(text)
        with pytest.raises(SystemExit) as exited:  # argparse's one error line, exit 2
            parse_settings(config, ["--config", str(tmp_path / "bad.json")])
        assert exited.value.code == 2 and message in capsys.readouterr().err


def test_every_stage_records_settings_that_repeat_it(tmp_path):
    """Data stages (beside their output folder) and the evaluation (in it) record their settings; `--config` on them gives back
    the same resolved settings (training runs: tests/test_training_runs.py repeats the losses)."""
    import json
    import shutil
    import subprocess
    import sys

    from conftest import REPO_ROOT, VECTORS
    from notagen.settings import parse_settings
    from data_support import MUSIC21_CORPUS

    (tmp_path / "xml").mkdir()
    shutil.copy(MUSIC21_CORPUS / "bach" / "bwv269.mxl", tmp_path / "xml")
    runs = {"data/1_batch_xml2abc.py": (["--ori_folder", tmp_path / "xml", "--des_folder", tmp_path / "std",
                                         "--workers", "1"], tmp_path / "std_settings.json", REPO_ROOT / "data" / "config_xml2abc.py"),
            "data/2_data_preprocess.py": (["--ori_folder", tmp_path / "std", "--interleaved_folder", tmp_path / "il",
                                           "--augmented_folder", tmp_path / "aug", "--workers", "1", "--eval_split", "0"],
                                          tmp_path / "aug_settings.json", REPO_ROOT / "data" / "config.py"),
            "clamp2/evaluate.py": (["--generated_dir", tmp_path / "il", "--reference_dir", tmp_path / "il",
                                    "--clamp2_weights_path", VECTORS / "tiny_clamp2.pth",
                                    "--eval_output_dir", tmp_path / "report", "--style_train_dir", ""], tmp_path / "report" / "settings.json",
                                   REPO_ROOT / "clamp2" / "config.py")}
    for script, (args, recorded, config) in runs.items():
        done = subprocess.run([sys.executable, str(REPO_ROOT / script), *map(str, args)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{script}:\n{done.stdout}\n{done.stderr[-2000:]}"
        settings = json.loads(recorded.read_text())
        assert settings == {k: v for k, v in vars(parse_settings(config, [*map(str, args)])).items()}, script
        assert vars(parse_settings(config, ["--config", str(recorded)])) == settings, script


def test_a_stage_runs_on_its_num_threads():
    import torch

    from notagen.settings import run_stage

    before = torch.get_num_threads()
    try:
        wanted = 1 if before != 1 else 2
        settings = parse_settings(REPO_ROOT / "RL" / "config.py", ["--num_threads", str(wanted)])
        assert run_stage(lambda s: torch.get_num_threads(), settings) == wanted  # RL/loop.py, data.py, train.py
    finally:
        torch.set_num_threads(before)
