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
