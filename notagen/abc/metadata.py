"""Prompt lines from metadata: the period / composer / instrumentation of each piece.

Where the metadata comes from (`read_metadata`):
- a CSV file with the header `name,period,composer,instrumentation` (any column order; other
  columns are ignored), UTF-8 (a byte-order mark is fine);
- JSON lines with the same keys (a file ending in .jsonl / .ndjson / .json, or whose first
  character that is not blank is `{`);
- the folder layout `<period>/<composer>/<instrumentation>/<score>`: `folders` reads it from the
  stage's own input folder, a folder path from that folder (e.g. the MusicXML folder given to
  stage 1, whose names stage 1 gives its ABC files). Folders below the instrumentation are part
  of the score's name.
`name` is a piece's name in the stages: its path below the input folder without suffix, folders
joined by `_` (in a flat folder, the file name without suffix).

Design choices:
- One home of the prompt rules, shared by stage 2 and the corpus builder (`corpus.py`,
  `openscore.py`): `check_prompt` refuses an empty field, a line break or `|` in a field (`|`
  separates the fields in prompts.txt and `--prompt`) and a field starting with `%` (its line
  would read as a `%%` directive); it transliterates to ASCII with unidecode (NotaGen-X spells
  `Schroter, Corona`; the preprocessing would do the same to every prompt line). `with_prompt`
  puts the three lines on top of a text, replacing prompt lines the text had.
- Bad metadata is one error naming the file and line (for CSV the line where the record
  starts; for the folder layout, the folder): a bad field, a name listed twice, a name that
  matches no score. Pieces without an entry are no error: they are kept without prompt lines
  (unconditional fine-tuning is a published use), counted and named in the summary. A score of
  the folder layout that has no ABC file (stage 1 failed on it) is no error either.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from unidecode import unidecode

from .convert import SCORE_SUFFIXES
from .text import split_prompt_lines

Prompt = tuple  # (period, composer, instrumentation)
FIELDS = ("period", "composer", "instrumentation")
COLUMNS = ("name",) + FIELDS
FOLDER_LAYOUT = "folders"  # the `--metadata` value that reads the stage's input folder layout
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
NAMES_SHOWN = 20  # pieces without an entry named in the summary line; the rest are counted


class MetadataError(ValueError):
    """Metadata that cannot be used; the message starts with `<file>:<line>:` (or the folder)."""


@dataclass(frozen=True)
class Entry:
    prompt: Prompt
    where: str           # "<file>:<line>" or the folder, for error messages
    strict: bool = True  # a name matching no score is an error (tables; not the folder layout)


def check_prompt(values, where: str) -> Prompt:
    """(period, composer, instrumentation), stripped and in ASCII; MetadataError naming `where`."""
    prompt = []
    for name, value in zip(FIELDS, values):
        if not isinstance(value, str):
            raise MetadataError(f"{where}: {name} must be text, got {value!r}")
        if "\n" in value or "\r" in value:
            raise MetadataError(f"{where}: {name} {value.strip()[:40]!r} holds a line break")
        value = unidecode(value).strip()
        if not value:
            raise MetadataError(f"{where}: empty {name}")
        if "|" in value:
            raise MetadataError(f"{where}: {name} {value!r} holds '|' (it separates the fields of a prompt)")
        if value.startswith("%"):
            raise MetadataError(f"{where}: {name} {value!r} starts with '%'")
        prompt.append(value)
    return tuple(prompt)


def prompt_header(prompt: Prompt | None) -> str:
    """The prompt lines `%period\\n%composer\\n%instrumentation\\n` ("" for None)."""
    return "".join(f"%{value}\n" for value in prompt or ())


def with_prompt(text: str, prompt: Prompt | None) -> str:
    """`text` with `prompt`'s lines on top instead of any it had; None leaves the text as it is."""
    return text if prompt is None else prompt_header(prompt) + split_prompt_lines(text)[1]


# ---------------------------------------------------------------- reading

def piece_name(path: Path, folder: Path) -> str:
    """A piece's name in the stages: its path below `folder` without suffix, folders joined by `_`."""
    return "_".join(path.relative_to(folder).with_suffix("").parts)


def _decoded(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise MetadataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x})") from None


def _add(entries: dict[str, Entry], name: str, entry: Entry) -> None:
    if not name:
        raise MetadataError(f"{entry.where}: empty name")
    if name in entries:
        raise MetadataError(f"{entry.where}: {name!r} is listed again (first at {entries[name].where})")
    entries[name] = entry


def read_csv_metadata(path: str | Path) -> dict[str, Entry]:
    path = Path(path)
    reader = csv.reader(io.StringIO(_decoded(path), newline=""))
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise MetadataError(f"{path}:1: empty file (expected the header {','.join(COLUMNS)})") from None
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise MetadataError(f"{path}:1: the header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})")
    entries: dict[str, Entry] = {}
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: the record's first line
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise MetadataError(f"{path}:{start}: {error}") from None
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}:{start}"
        if len(row) != len(header):
            raise MetadataError(f"{where}: {len(row)} fields, the header has {len(header)}")
        values = dict(zip(header, row))
        if "\n" in values["name"] or "\r" in values["name"]:
            raise MetadataError(f"{where}: name {values['name'].strip()[:40]!r} holds a line break")
        _add(entries, values["name"].strip(), Entry(check_prompt([values[f] for f in FIELDS], where), where))
    return entries


def read_json_lines_metadata(path: str | Path) -> dict[str, Entry]:
    path = Path(path)
    entries: dict[str, Entry] = {}
    for number, line in enumerate(_decoded(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise MetadataError(f"{where}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise MetadataError(f"{where}: expected an object with the keys {', '.join(COLUMNS)}")
        missing = [key for key in COLUMNS if key not in record]
        if missing:
            raise MetadataError(f"{where}: no {', '.join(missing)}")
        if not isinstance(record["name"], str):
            raise MetadataError(f"{where}: name must be text, got {record['name']!r}")
        _add(entries, record["name"].strip(), Entry(check_prompt([record[f] for f in FIELDS], where), where))
    return entries


def read_folder_metadata(folder: str | Path, suffixes=SCORE_SUFFIXES + (".abc",)) -> dict[str, Entry]:
    """{piece name: prompt} of the scores under `<folder>/<period>/<composer>/<instrumentation>/`;
    a score less deep has no entry."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such metadata folder: {folder}")
    entries: dict[str, Entry] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        parts = path.relative_to(folder).parts
        if len(parts) >= 4:
            where = str(folder.joinpath(*parts[:3]))
            entries[piece_name(path, folder)] = Entry(check_prompt(parts[:3], where), where, strict=False)
    return entries


def read_metadata(source: str | Path, ori_folder: str | Path) -> dict[str, Entry]:
    """The entries of `source`: `folders` (the layout of `ori_folder`), a folder, a CSV or JSON-lines file."""
    if str(source).strip() == FOLDER_LAYOUT:
        return read_folder_metadata(ori_folder)
    path = Path(source)
    if path.is_dir():
        return read_folder_metadata(path)
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {source} (a CSV or JSON-lines file, a folder, or "
                                f"'{FOLDER_LAYOUT}')")
    if path.suffix.lower() in JSON_SUFFIXES or _decoded(path).lstrip().startswith("{"):
        return read_json_lines_metadata(path)
    return read_csv_metadata(path)


# ---------------------------------------------------------------- matching pieces

@dataclass
class PromptAssignment:
    """Which pieces get which prompt lines, and which have no entry."""
    prompts: dict[str, Prompt] = field(default_factory=dict)
    without: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = (f"prompt lines: {len(self.prompts)} pieces with an entry "
                f"({len(set(self.prompts.values()))} prompts), {len(self.without)} without")
        if self.without:
            shown = ", ".join(self.without[:NAMES_SHOWN])
            more = f", ... ({len(self.without) - NAMES_SHOWN} more)" if len(self.without) > NAMES_SHOWN else ""
            line += f" (kept without prompt lines: {shown}{more})"
        return line


def assign_prompts(entries: dict[str, Entry], names) -> PromptAssignment:
    """Match the entries to the pieces `names`; an entry of a table naming no piece is an error."""
    names = sorted(names)
    known = set(names)
    for name, entry in entries.items():
        if entry.strict and name not in known:
            raise MetadataError(f"{entry.where}: {name!r} matches no score (names are the file names "
                                f"without suffix, as stage 1 names its ABC files)")
    return PromptAssignment(prompts={name: entries[name].prompt for name in names if name in entries},
                            without=[name for name in names if name not in entries])
