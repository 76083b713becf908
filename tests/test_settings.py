"""config.py settings: defaults, typed command-line overrides, help text from comments."""
import pytest

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
