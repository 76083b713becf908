"""NotaGen training data: index files -> (key choice) -> ABC text -> patches -> padded batches.

Design choices
- Index files (data-formats.md s.5) are JSON lines `{"path": "<AUG>/<name>", "key": "<original key>"}`;
  the file for a chosen key is `<AUG>/<KEY>/<name>_<KEY>.abc`. Plain file lists (one path a line, or
  JSON lines whose path is an existing file) are read as they are, with no key choice.
- Key choice (s.7): pre-training picks one of the 15 key folders uniformly; fine-tuning picks a key
  -3..+3 semitones from the original tonic with weights 1,2,3,4,3,2,1 (/16), with the spec's
  enharmonic spellings; a mode-qualified key first maps to its key-signature key (Cmin -> Eb).
- Every random choice of an example (key, stream cut) comes from its own `random.Random` seeded by
  (seed, epoch, index). The data an example yields therefore depends on nothing else: not on the
  DataLoader workers, the process count, or whether the run was interrupted and resumed. The
  eval set never calls `set_epoch`, so its keys and cuts are the same every epoch.
- Relative paths inside an index are tried against the working directory, the index's folder and
  that folder's ancestors (an index under `corpus/pretrain/` may name `corpus/pretrain/augmented/x`).
- Prompt balance (fine-tuning): with `prompt_balance` b > 0 the pieces of a prompt that has n pieces
  are listed round((n_max / n) ** b) times, so each prompt's share of an epoch goes as n ** (1 - b)
  (0: as in the data, 1: every prompt as often as the largest). Rare prompts are otherwise seen
  too seldom to be learned; each repeat gets its own key and stream cut (they are seeded by index).
- Bad input: a missing or empty index, a malformed line or an unknown key is an error naming the
  file and line. A listed file that is gone or not ASCII is logged once and the next example is
  used in its place (so batch shapes and the data order of other examples do not change); a
  dataset in which no file can be read is an error.
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .abc.text import KEYS_15
from .config import PAD_ID
from .paths import index_entry_bases
from .patchilizer import Patchilizer

logger = logging.getLogger("notagen.data")

KEYS = tuple(KEYS_15)
KEY_PITCH_CLASS = {"C": 0, "C#": 1, "Db": 1, "D": 2, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6,
                   "G": 7, "Ab": 8, "A": 9, "Bb": 10, "B": 11, "Cb": 11}
# the key-signature key of a tonic in each mode, counted in semitones above the tonic
_MODE_TO_MAJOR = {"maj": 0, "ion": 0, "dor": -2, "phr": -4, "lyd": -5, "mix": -7,
                  "min": 3, "m": 3, "aeo": 3, "loc": 1}
NEAR_OFFSETS = (-3, -2, -1, 0, 1, 2, 3)
NEAR_WEIGHTS = (1, 2, 3, 4, 3, 2, 1)  # /16
# pitch class -> ((spelling, probability), ...); other pitch classes have one spelling
ENHARMONIC = {1: (("Db", 0.8), ("C#", 0.2)), 11: (("B", 0.8), ("Cb", 0.2)),
              6: (("F#", 0.5), ("Gb", 0.5))}
SINGLE_SPELLING = {0: "C", 2: "D", 3: "Eb", 4: "E", 5: "F", 7: "G", 8: "Ab", 9: "A", 10: "Bb"}
KEY_MODES = ("uniform", "near", "original", "none")


class DataError(ValueError):
    """An index file or data folder that cannot be used; the message names the file (and line)."""


def key_signature_key(key: str) -> str:
    """The major key with the same signature, one of the 15 folder keys: 'Cmin' -> 'Eb', 'G' -> 'G'.

    A missing key or `none` counts as C (data-formats.md s.4)."""
    text = (key or "").strip()
    if text == "" or text.lower() == "none":
        return "C"
    tonic_len = 2 if len(text) > 1 and text[1] in "#b" else 1
    tonic, mode = text[:tonic_len], text[tonic_len:].strip().lower()
    tonic = tonic[0].upper() + tonic[1:]
    pitch = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}.get(tonic[0])
    if pitch is None:
        raise ValueError(f"unknown key {key!r}")
    pitch += {"#": 1, "b": -1}.get(tonic[1:], 0)
    if mode in ("", "maj", "major", "ion", "ionian"):
        shift = 0
    else:
        shift = next((v for k, v in _MODE_TO_MAJOR.items() if mode == k or (len(k) > 1 and mode.startswith(k))),
                     None)
        if shift is None:
            raise ValueError(f"unknown mode in key {key!r}")
    if shift == 0 and tonic in KEY_PITCH_CLASS:
        return tonic  # keep the spelling of a major key (Cb stays Cb)
    return spell_pitch_class((pitch + shift) % 12, None)


def spell_pitch_class(pitch_class: int, rng: random.Random | None) -> str:
    """The folder key for a pitch class; ambiguous ones are drawn with the spec's odds (rng=None: the likelier)."""
    if pitch_class in ENHARMONIC:
        (first, p_first), (second, _) = ENHARMONIC[pitch_class]
        if rng is None:
            return first
        return first if rng.random() < p_first else second
    return SINGLE_SPELLING[pitch_class]


def choose_key(original_key: str | None, mode: str, rng: random.Random) -> str:
    """The folder key to read for one example (data-formats.md s.7)."""
    if mode == "uniform":
        return rng.choice(KEYS)
    if mode == "original":
        return key_signature_key(original_key or "")
    if mode == "near":
        tonic = KEY_PITCH_CLASS[key_signature_key(original_key or "")]
        offset = rng.choices(NEAR_OFFSETS, weights=NEAR_WEIGHTS)[0]
        return spell_pitch_class((tonic + offset) % 12, rng)
    raise ValueError(f"unknown key mode {mode!r}; choose one of {', '.join(KEY_MODES)}")


def is_prompt_header(lines: list[str]) -> bool:
    """True for the three prompt lines `%period`, `%composer`, `%instrumentation` (not `%%` directives)."""
    return len(lines) == 3 and all(line.startswith("%") and not line.startswith("%%") and line[1:].strip()
                                   for line in lines)


# ---- index files -------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexEntry:
    path: str  # `<AUG>/<name>` (with key) or a file path (without)
    key: str | None = None  # original key; None for a plain file entry
    line: int = 0  # line number in the index, for error messages


def read_index(path: str | Path) -> list[IndexEntry]:
    """Entries of a JSON-lines index (`{"path", "key"}`) or a plain list of file paths."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"index file not found: {path} (build the corpus first, or set the "
                                f"data index path)")
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        line_no = path.read_bytes()[:error.start].count(b"\n") + 1
        raise DataError(f"{path}:{line_no}: not UTF-8 text (byte 0x{error.object[error.start]:02x})") from None
    for line_no, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{line_no}: not valid JSON ({error.msg})") from None
            entry_path = obj.get("path") or obj.get("filepath") or obj.get("filename")
            if not isinstance(entry_path, str) or not entry_path:
                raise DataError(f"{path}:{line_no}: no \"path\" in {line[:80]}")
            key = obj.get("key")
            if key is not None and not isinstance(key, str):
                raise DataError(f"{path}:{line_no}: \"key\" must be a string, got {key!r}")
            entries.append(IndexEntry(entry_path, key, line_no))
        else:
            entries.append(IndexEntry(line, None, line_no))
    if not entries:
        raise DataError(f"index file {path} lists no pieces")
    return entries


def _resolve(path: str, bases: list[Path], is_key_entry: bool) -> Path | None:
    """The existing file (plain entry) or the `<AUG>` folder holding `<KEY>/<name>_<KEY>.abc` files
    (key entry; looked up once per folder, so later pieces of a folder cost nothing)."""
    given = Path(path)
    parent = given.parent
    for base in ([Path("/")] if given.is_absolute() else bases):
        candidate = base / given
        if is_key_entry:  # the folder must hold this piece in some key, not just exist
            folder = base / parent
            if folder.is_dir() and any((folder / k / f"{given.name}_{k}.abc").is_file() for k in KEYS):
                return folder
        elif candidate.is_file():
            return candidate
    return None


# ---- dataset -----------------------------------------------------------------------------------
class NotaGenDataset(Dataset):
    """Index entries -> training sequences of patch ids ([N, patch_size] LongTensor each).

    key_mode (for `{"path", "key"}` indexes): "uniform" (pre-training, the default), "near"
    (fine-tuning), "original" (the piece's own key). Plain file lists ignore it (mode "none").
    require_prompt_lines: log pieces that do not start with the three `%` prompt lines (fine-tuning).
    """

    def __init__(self, index_path: str | Path, patch_size: int = 16, patch_length: int = 1024,
                 key_mode: str | None = None, patch_stream: bool = True, seed: int = 0,
                 require_prompt_lines: bool = False, max_entries: int = 0, prompt_balance: float = 0.0):
        self.index_path = Path(index_path)
        entries = read_index(self.index_path)
        if max_entries:
            entries = entries[:max_entries]
        has_keys = [e.key is not None for e in entries]
        if any(has_keys) and not all(has_keys):
            first_plain = next(e for e in entries if e.key is None)
            raise DataError(f"{self.index_path}:{first_plain.line}: mixes entries with and without \"key\"")
        self.keyed = all(has_keys)
        if key_mode is not None and key_mode not in KEY_MODES:
            raise ValueError(f"unknown key mode {key_mode!r}; choose one of {', '.join(KEY_MODES)}")
        if not self.keyed:
            key_mode = "none"  # plain files: nothing to choose
        elif key_mode is None:
            key_mode = "uniform"
        if key_mode == "none" and self.keyed:
            raise DataError(f"{self.index_path} lists <AUG>/<name> entries: choose a key mode")
        if key_mode in ("near", "original"):
            for entry in entries:
                try:
                    key_signature_key(entry.key)
                except ValueError as error:
                    raise DataError(f"{self.index_path}:{entry.line}: {error}") from None
        self.entries = entries
        self.key_mode = key_mode
        self.patch_length = patch_length
        self.patch_stream = patch_stream
        self.seed = seed
        self.epoch = 0
        self.require_prompt_lines = require_prompt_lines
        self.patchilizer = Patchilizer(patch_size)
        self._bases = index_entry_bases(self.index_path)
        self._folders: dict[str, Path] = {}
        self._warned: set[str] = set()
        # fail early and clearly when the index's paths point nowhere at all
        if not any(self._locate(entry.path) is not None for entry in entries[:20]):
            where = ", ".join(str(b) for b in self._bases[:3])
            what = "folder of" if self.keyed else "file"
            raise DataError(f"{self.index_path}:{entries[0].line}: cannot find the {what} "
                            f"{entries[0].path!r} (tried relative to {where}, ...)")
        if prompt_balance < 0:
            raise ValueError(f"prompt_balance must be >= 0, got {prompt_balance}")
        self.prompt_repeats: dict[tuple[str, ...], int] = {}
        if prompt_balance > 0:
            self._balance_prompts(prompt_balance)

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Called by the training loop each epoch: new keys and stream cuts, reproducibly."""
        self.epoch = epoch

    def _locate(self, path: str) -> Path | None:
        if not self.keyed:
            return _resolve(path, self._bases, False)
        folder_key = str(Path(path).parent)
        if folder_key not in self._folders:  # only found folders are remembered
            found = _resolve(path, self._bases, True)
            if found is None:
                return None
            self._folders[folder_key] = found
        return self._folders[folder_key]

    def file_for(self, entry: IndexEntry, key: str | None) -> Path | None:
        located = self._locate(entry.path)
        if located is None:
            return None
        if not self.keyed:
            return located
        name = Path(entry.path).name
        return located / key / f"{name}_{key}.abc"

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            logger.warning(message)

    def read_text(self, index: int, rng: random.Random) -> str | None:
        """The text of example `index` (key chosen with `rng`), or None after logging why not."""
        entry = self.entries[index]
        key = choose_key(entry.key, self.key_mode, rng) if self.keyed else None
        path = self.file_for(entry, key)
        if path is None or not path.is_file():
            shown = path if path is not None else entry.path
            self._warn_once(str(shown), f"skipping {self.index_path}:{entry.line}: file not found: {shown}")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as error:
            self._warn_once(str(path), f"skipping {path}: cannot read it as UTF-8 text ({error})")
            return None
        if not text.isascii():
            bad = next(c for c in text if ord(c) > 127)
            self._warn_once(str(path), f"skipping {path}: non-ASCII character {bad!r} (the corpus "
                                       f"builder transliterates with unidecode; rebuild this piece)")
            return None
        if self.require_prompt_lines and not is_prompt_header(text.split("\n")[:3]):
            # once per dataset: unconditional fine-tuning has many such files (the counts are
            # printed when fine-tuning starts)
            self._warn_once("no prompt lines", f"{path} does not start with the three prompt lines "
                                               f"%period / %composer / %instrumentation (warned once)")
        return text

    def prompt_of(self, entry: IndexEntry) -> tuple[str, ...]:
        """The (period, composer, instrumentation) of an entry's `%` prompt lines; () if it has none."""
        for key in (KEYS if self.keyed else (None,)):
            path = self.file_for(entry, key)
            if path is not None and path.is_file():
                with open(path, encoding="utf-8", errors="replace") as handle:
                    head = [handle.readline().rstrip("\n") for _ in range(3)]
                return tuple(line[1:].strip() for line in head) if is_prompt_header(head) else ()
        return ()

    def prompt_counts(self) -> Counter:
        """Pieces per (period, composer, instrumentation) of their `%` prompt lines; the key ()
        counts the pieces without prompt lines."""
        unique = dict.fromkeys(self.entries)  # a balanced set lists entries several times: read each once
        return Counter(map(self.prompt_of, unique))

    def prompt_triples(self) -> list[tuple[str, str, str]]:
        """The (period, composer, instrumentation) triples of the pieces' `%` prompt lines, sorted."""
        return sorted(prompt for prompt in self.prompt_counts() if prompt)

    def _balance_prompts(self, balance: float) -> None:
        """List each prompt's pieces round((n_max / n) ** balance) times (pieces without prompt
        lines form one group)."""
        prompts = [self.prompt_of(entry) for entry in self.entries]
        counts = Counter(prompts)
        largest = max(counts.values())
        self.prompt_repeats = {p: max(1, round((largest / n) ** balance)) for p, n in counts.items()}
        pieces = len(self.entries)
        self.entries = [entry for entry, prompt in zip(self.entries, prompts)
                        for _ in range(self.prompt_repeats[prompt])]
        rarest = min(counts, key=counts.get)
        logger.info(f"prompt balance {balance}: {pieces} pieces of {len(counts)} prompts -> {len(self.entries)} "
                    f"examples an epoch (a prompt with {counts[rarest]} piece(s) repeated "
                    f"{self.prompt_repeats[rarest]} times, the largest with {largest} once)")

    def example_rng(self, index: int) -> random.Random:
        return random.Random(f"notagen:{self.seed}:{self.epoch}:{index}")

    def __getitem__(self, index: int) -> torch.Tensor:
        for tries in range(len(self.entries)):
            current = (index + tries) % len(self.entries)
            rng = self.example_rng(current)
            text = self.read_text(current, rng)
            if text is not None:
                patches = self.patchilizer.encode_train(text, self.patch_length, cut=self.patch_stream, rng=rng)
                return torch.tensor(patches, dtype=torch.long)
        raise DataError(f"no piece listed in {self.index_path} could be read (see the warnings above)")


def collate_patches(sequences: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pad sequences of patches to the longest: {"patches": [B, N, P], "masks": [B, N] (1 = real)}."""
    if not sequences:
        raise ValueError("cannot collate an empty batch")
    longest = max(len(s) for s in sequences)
    patch_size = sequences[0].shape[-1]
    patches = torch.full((len(sequences), longest, patch_size), PAD_ID, dtype=torch.long)
    masks = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        patches[row, :len(sequence)] = sequence
        masks[row, :len(sequence)] = 1
    return {"patches": patches, "masks": masks}
