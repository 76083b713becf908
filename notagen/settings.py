"""Stage settings: a plain `config.py` of UPPERCASE constants, overridable on the command line.

Users of the published code edit `config.py` and run the script; here every constant can also be
given as `--name value` (lower or upper case). The trailing `# comment` of a constant is its help
text, so `python script.py --help` documents every setting. The type of an override is the type of
the default: int, float, bool (true/false/1/0/yes/no), str; a default of None accepts any string
("none" gives None back).

`--config FILE` (JSON or YAML: a mapping of setting names to values, or a file holding one under
"settings", such as a run's `settings.json` or an inference run summary) sits between the two:
its values replace config.py's, the command line replaces both. So a run is repeated with
`--config <its output>/settings.json`.
"""
from __future__ import annotations

import argparse
import errno
import importlib.util
import io
import json
import os
import sys
import tokenize
from pathlib import Path
from types import SimpleNamespace

from .io import atomic_write_json
from .launch import end_processes


def _comments_by_name(source: str) -> dict[str, str]:
    """Map each top-level `NAME = ...  # help` to its help text."""
    helps: dict[str, str] = {}
    name_on_line: dict[int, str] = {}
    for line_no, line in enumerate(source.splitlines(), start=1):
        head = line.split("=", 1)[0].strip()
        if "=" in line and head.isidentifier() and head.isupper() and not line[:1].isspace():
            name_on_line[line_no] = head
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in name_on_line:
            helps[name_on_line[tok.start[0]]] = tok.string.lstrip("#").strip()
    return helps


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parse_optional(text: str):
    return None if text.strip().lower() == "none" else text


def _converter(default):
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, (int, float, str)):
        return type(default)
    return _parse_optional


def load_config_module(path: str | Path):
    """Import a stage's config.py by path (stages are folders, not packages)."""
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"_stage_config_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SettingsError(ValueError):
    """A settings file that cannot be read, or that names unknown settings or wrong types."""


def read_settings_file(path: str | Path, defaults: dict) -> dict:
    """{UPPER name: value} from a JSON/YAML settings file, each checked against config.py's default."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = (__import__("yaml").safe_load(text) if path.suffix.lower() in (".yaml", ".yml")
                else json.loads(text))
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {path}") from None
    except Exception as error:  # noqa: BLE001 - JSON, YAML and decoding errors alike
        raise SettingsError(f"{path} is not a JSON or YAML settings file: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("settings"), dict):
        data = data["settings"]
    if not isinstance(data, dict):
        raise SettingsError(f"{path} holds no mapping of setting names to values")
    values, unknown = {}, []
    for key, value in data.items():
        name = str(key).upper()
        if name not in defaults:
            unknown.append(str(key))
            continue
        default = defaults[name]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok, value = isinstance(value, (int, float)) and not isinstance(value, bool), \
                float(value) if isinstance(value, (int, float)) else value
        elif isinstance(default, str):
            ok = isinstance(value, str)
        else:
            ok = True
        if not ok:
            raise SettingsError(f"{path}: {key} must be {type(default).__name__} like its default "
                                f"{default!r}, not {value!r}")
        values[name] = value
    if unknown:
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))} for this stage")
    return values


def parse_settings(config_path: str | Path, argv: list[str] | None = None,
                   description: str | None = None) -> SimpleNamespace:
    """Read `config_path`, apply `--name value` overrides from `argv`, return lower-case names.

    >>> cfg = parse_settings("inference/config.py", ["--top_k", "1"])
    >>> cfg.top_k
    1
    """
    config_path = Path(config_path)
    module = load_config_module(config_path)
    helps = _comments_by_name(config_path.read_text())
    defaults = {name: getattr(module, name) for name in dir(module)
                if name.isupper() and not name.startswith("_")}
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config", default="")
    known, _ = first.parse_known_args(argv)
    parser = argparse.ArgumentParser(description=description or f"settings from {config_path}",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if known.config:
        try:
            defaults.update(read_settings_file(known.config, defaults))
        except SettingsError as error:
            parser.error(str(error))  # one line and exit 2, from every script
    parser.add_argument("--config", default="", help="JSON or YAML file of settings (e.g. a run's settings.json): "
                                                    "its values replace config.py's, the command line replaces both")
    for name, default in defaults.items():
        parser.add_argument(f"--{name.lower()}", *([f"--{name}"] if name.lower() != name else []),
                            dest=name.lower(), type=_converter(default), default=default,
                            help=helps.get(name, " ").replace("%", "%%"))  # argparse formats help with %
    parsed = vars(parser.parse_args(argv))
    parsed.pop("config")
    return SimpleNamespace(**parsed)


def plain_settings(settings) -> dict:
    """The settings JSON holds as they are (a namespace or a dict): what `--config` reads back."""
    values = settings if isinstance(settings, dict) else vars(settings)
    return {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}


def record_settings(settings, path: str | Path) -> Path:
    """Write a stage's resolved settings to `path` (atomically): `--config <path>` repeats the run.
    The flags that only say how to treat an earlier run (resume, overwrite) are left out."""
    values = {k: v for k, v in plain_settings(settings).items() if k not in ("load_from_checkpoint", "overwrite")}
    atomic_write_json(path, values)
    return Path(path)


def apply_num_threads(settings) -> None:
    """Give torch the stage's NUM_THREADS (0 = leave torch's default). Every stage's entry function
    calls it, so the setting holds whether the stage runs as a script or from Python."""
    threads = getattr(settings, "num_threads", 0) or 0
    if threads > 0:
        import torch  # lazy: torch takes seconds to import, and the data stages read settings without it

        torch.set_num_threads(threads)


def run_stage(main, *args) -> int:
    """Run a stage script's work. A mistake the user can fix (a missing file, an earlier run in the
    way, a setting that cannot work, a full disk) ends in one `error:` line and exit code 2, not a
    traceback; NOTAGEN_TRACEBACK=1 shows the traceback too."""
    for settings in args:
        apply_num_threads(settings)
    try:
        result = main(*args)
    except (FileExistsError, FileNotFoundError, ValueError, OSError) as error:
        user_made = not isinstance(error, OSError) or isinstance(error, (FileExistsError, FileNotFoundError)) \
            or error.errno in (errno.ENOSPC, errno.EDQUOT)
        if not user_made or os.environ.get("NOTAGEN_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    end_processes()
    return result if isinstance(result, int) else 0
