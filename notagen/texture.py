"""What a piece is written for, read from its own ABC header: its parts, what each part is, and
whether that is the texture its prompt's instrumentation asks for.

Design choices
- Parts come from the `%%score` line, as abc2xml builds them: a `( ... )` group is one staff of
  several voices, a `{ ... }` brace is one instrument on several staves (a piano's grand staff),
  anything else is a part of its own; `[ ... ]` brackets and `|` only draw lines. One exception: a
  staff inside a brace whose voice carries a name of its own (OpenScore's Corelli writes two
  violins in one brace) starts a part. Without `%%score` every `V:` voice is a part.
- A part's name is the `nm=` (else `snm=`) of its first named voice; names are cleaned of the
  escaped newlines and `:` that MusicXML exports leave ("\\n\\t:Violin 1" -> "violin 1") and
  transliterated to ASCII ("Sång" -> "sang").
- A name is classified by its words: an instrument word anywhere wins over a voice word ("Alto
  Saxophone", "Basso continuo", "Violone e Organo" are instruments), the first instrument word
  wins among several ("Piano (or Harp)" is a piano); a voice word makes a sung part; a single
  letter S/A/T/B/C/Q is a choir part ("S.", "T"); anything else ("MusicXML Part", a generated
  "Qnor", no name) is unknown. "Bass" alone is the voice (choral scores), "double bass" the string.
- Families: voice, keyboard, string (bowed), plucked (guitar, harp, lute), instrument (winds,
  brass, percussion), unknown.
- General MIDI programs (0-based) from the same classification, for the audio: bowed strings
  violin 40, viola 41, cello 42, contrabass 43; voices 52 (Choir Aahs) when the piece has several
  sung parts and 53 (Voice Oohs) for a single sung line (an art song's singer should not sound like
  a choir); piano 0, harpsichord or continuo 6, organ 19; a few winds, brass and plucked
  instruments their GM program; unknown 0 (piano).
- Adherence rules, per instrumentation (the prompt's third line):
  * Choral: at least two sung parts, and no more other parts than sung ones (a continuo, a piano
    reduction, the horns or oboes doubling a Bach chorale's voices);
  * Art Song: exactly one sung part, accompanied by keyboard or plucked parts (unknown-named staves
    count as the accompaniment: a piano's lower staff is often unnamed), at least one;
  * Chamber: at least two parts, none sung, at least one a bowed string or another non-keyboard
    instrument (string quartets, trio sonatas, piano trios, a clarinet with piano);
  * Keyboard: at most two staves in all, none sung or played by a non-keyboard instrument
    (unnamed staves count as the keyboard's).
  Other instrumentations (Orchestral, Band, Vocal-Orchestral, ...) have no rule (None).
  A piece that cannot be told (its parts unnamed) does not adhere: the rule measures what the
  score says, and the real pieces of a prompt give the ceiling (see notagen.evaluation).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from unidecode import unidecode

from .abc.text import strip_stream_prefixes

# name word -> (family, GM program); one spelling per line of thought, all lower case ASCII
_INSTRUMENT_WORDS: dict[str, tuple[str, int]] = {
    **dict.fromkeys(("violin", "violins", "violino", "violini", "violine", "violon", "vln", "vn", "vl", "geige"),
                    ("string", 40)),
    **dict.fromkeys(("viola", "violas", "vla", "va", "bratsche"), ("string", 41)),
    **dict.fromkeys(("cello", "cellos", "violoncello", "violoncelli", "violoncelle", "vc", "vlc"), ("string", 42)),
    **dict.fromkeys(("contrabass", "kontrabass", "violone", "cb"), ("string", 43)),
    **dict.fromkeys(("piano", "pianoforte", "fortepiano", "klavier", "clavier", "pno", "pf", "keyboard"),
                    ("keyboard", 0)),
    **dict.fromkeys(("harpsichord", "cembalo", "clavecin", "continuo", "bc"), ("keyboard", 6)),
    **dict.fromkeys(("organ", "orgel", "organo", "orgue"), ("keyboard", 19)),
    **dict.fromkeys(("guitar", "guitare", "guitarre", "gitarre", "chitarra", "lute", "laute", "liuto"), ("plucked", 24)),
    **dict.fromkeys(("harp", "harfe", "arpa", "harpe"), ("plucked", 46)),
    **dict.fromkeys(("flute", "flote", "flauto", "traverso", "flutes"), ("instrument", 73)),
    **dict.fromkeys(("piccolo",), ("instrument", 72)),
    **dict.fromkeys(("recorder", "blockflote"), ("instrument", 74)),
    **dict.fromkeys(("oboe", "oboes", "hautbois"), ("instrument", 68)),
    **dict.fromkeys(("clarinet", "clarinets", "klarinette", "clarinetto", "clarinette"), ("instrument", 71)),
    **dict.fromkeys(("bassoon", "bassoons", "fagott", "fagotto", "basson"), ("instrument", 70)),
    **dict.fromkeys(("horn", "horns", "corno", "corni", "cor"), ("instrument", 60)),
    **dict.fromkeys(("trumpet", "trumpets", "tromba", "trombe", "trompete", "trompette", "cornet", "cornett",
                     "cornetto", "zink"), ("instrument", 56)),
    **dict.fromkeys(("trombone", "trombones", "posaune"), ("instrument", 57)),
    **dict.fromkeys(("tuba",), ("instrument", 58)),
    **dict.fromkeys(("saxophone", "sax"), ("instrument", 65)),
    **dict.fromkeys(("timpani", "pauken"), ("instrument", 47)),
}
_VOICE_WORDS = frozenset((
    "soprano", "sopran", "mezzo", "alto", "alt", "contralto", "tenor", "tenore", "baritone", "bariton",
    "bass", "basso", "bassus", "cantus", "canto", "altus", "superius", "discantus", "quintus", "quinto",
    "sextus", "sesto", "triplum", "motetus", "duplum", "contratenor", "countertenor",
    "voice", "voices", "vox", "voix", "chant", "gesang", "singstimme", "stimme", "sang", "choir", "chor",
    "coro", "chorus", "men", "women"))
_CHOIR_LETTERS = frozenset("satbcq")
FAMILIES = ("voice", "keyboard", "string", "plucked", "instrument", "unknown")
CHOIR_PROGRAM = 52  # General MIDI Choir Aahs (0-based), for several sung parts
SOLO_VOICE_PROGRAM = 53  # General MIDI Voice Oohs, for a single sung line
UNKNOWN_PROGRAM = 0  # Acoustic Grand Piano


def clean_name(name: str) -> str:
    """Lower-case ASCII words of a part name, without escaped newlines, punctuation or digits."""
    text = unidecode(name.replace("\\n", " ").replace("\\t", " ")).lower()
    text = re.sub(r"double\s+bass|string\s+bass", "contrabass", text)
    return " ".join(re.sub(r"[^a-z]+", " ", text).split())


def name_family(name: str) -> str:
    """The family (FAMILIES) a part name says, by the rules of the module docstring."""
    words = clean_name(name).split()
    for word in words:
        if word in _INSTRUMENT_WORDS:
            return _INSTRUMENT_WORDS[word][0]
    if any(word in _VOICE_WORDS for word in words):
        return "voice"
    if len(words) == 1 and words[0] in _CHOIR_LETTERS:
        return "voice"
    return "unknown"


def gm_program(name: str, sung_parts: int = 1) -> int:
    """General MIDI program (0-127) for a part name; `sung_parts`: how many parts of the piece sing."""
    for word in clean_name(name).split():
        if word in _INSTRUMENT_WORDS:
            return _INSTRUMENT_WORDS[word][1]
    if name_family(name) == "voice":
        return CHOIR_PROGRAM if sung_parts > 1 else SOLO_VOICE_PROGRAM
    return UNKNOWN_PROGRAM


@dataclass(frozen=True)
class Part:
    name: str  # as written in the header ("" = none)
    staves: int  # staves the part is written on (a piano's grand staff: 2)
    voices: tuple[str, ...]  # the `V:` ids it holds

    @property
    def family(self) -> str:
        return name_family(self.name)


_NAME = re.compile(r'\b(s?nm)="([^"]*)"')
_SCORE_TOKEN = re.compile(r"[()\[\]{}|]|[^\s()\[\]{}|]+")


def _voice_names(lines: list[str]) -> dict[str, str]:
    """`V:` id -> its name (nm=, else snm=, else ""), in the order the voices are declared."""
    names: dict[str, str] = {}
    for line in lines:
        if not line.startswith("V:"):
            continue
        fields = line[2:].split()
        if not fields:
            continue
        found = dict(match.groups() for match in _NAME.finditer(line))
        name = found.get("nm") or found.get("snm") or ""
        if not names.get(fields[0]):
            names[fields[0]] = name.strip()
    return names


def _score_groups(score_line: str) -> list[tuple[bool, list[list[str]]]]:
    """The `%%score` line as (braced, staves) groups, each staff its voice ids."""
    groups: list[tuple[bool, list[list[str]]]] = []
    brace: list[list[str]] | None = None
    staff: list[str] | None = None
    for token in _SCORE_TOKEN.findall(score_line[len("%%score"):]):
        if token == "{":
            brace = []
        elif token == "}":
            if brace:
                groups.append((True, brace))
            brace = None
        elif token == "(":
            staff = []
        elif token == ")":
            if staff and brace is not None:
                brace.append(staff)
            elif staff:
                groups.append((False, [staff]))
            staff = None
        elif token in "[]|":
            continue
        elif staff is not None:
            staff.append(token)
        elif brace is not None:
            brace.append([token])
        else:
            groups.append((False, [[token]]))
    if brace:  # an unclosed brace still holds its staves
        groups.append((True, brace))
    return groups


def header_lines(text: str) -> list[str]:
    """The lines of a piece that can describe its parts: `%%score` and `V:` lines (the body's
    `[V:n]` bars are not), prompt lines and stream prefixes aside."""
    return [line.strip() for line in strip_stream_prefixes(text).split("\n")
            if line.startswith(("%%score", "V:"))]


def parts_of(text: str) -> list[Part]:
    """The parts of a piece (standard, interleaved or generated ABC), by the module's rules."""
    lines = header_lines(text)
    names = _voice_names(lines)
    score = next((line for line in lines if line.startswith("%%score")), None)
    if score is None:
        return [Part(name, 1, (voice,)) for voice, name in names.items()] or [Part("", 1, ())]
    parts: list[Part] = []
    listed: set[str] = set()
    for braced, staves in _score_groups(score):
        current: list[list[str]] = []
        for staff in staves:
            listed.update(staff)
            own = next((names.get(v, "") for v in staff if names.get(v)), "")
            if current and braced and own and own != _staves_name(current, names):
                parts.append(_part(current, names))  # a named staff inside a brace: another instrument
                current = []
            current.append(staff)
            if not braced:
                parts.append(_part(current, names))
                current = []
        if current:
            parts.append(_part(current, names))
    parts += [Part(name, 1, (voice,)) for voice, name in names.items() if voice not in listed]
    return parts


def _staves_name(staves: list[list[str]], names: dict[str, str]) -> str:
    return next((names[v] for staff in staves for v in staff if names.get(v)), "")


def _part(staves: list[list[str]], names: dict[str, str]) -> Part:
    return Part(_staves_name(staves, names), len(staves), tuple(v for staff in staves for v in staff))


def describe(parts: list[Part]) -> str:
    """A short texture label: the families in order of appearance with their counts,
    e.g. "voice x4", "voice + keyboard", "string x4", "keyboard"."""
    counts: dict[str, int] = {}
    for part in parts:
        counts[part.family] = counts.get(part.family, 0) + 1
    return " + ".join(family if n == 1 else f"{family} x{n}" for family, n in counts.items()) or "no parts"


def adheres(instrumentation: str, parts: list[Part]) -> bool | None:
    """Whether `parts` are the texture `instrumentation` asks for (module docstring); None: no rule."""
    families = [part.family for part in parts]
    sung = families.count("voice")
    others = [f for f in families if f != "voice"]
    rule = instrumentation.strip().lower()
    if rule == "choral":
        return sung >= 2 and len(others) <= sung
    if rule == "art song":
        return sung == 1 and bool(others) and all(f in ("keyboard", "plucked", "unknown") for f in others)
    if rule == "chamber":
        return len(parts) >= 2 and sung == 0 and any(f in ("string", "instrument", "plucked") for f in families)
    if rule == "keyboard":
        return sum(p.staves for p in parts) <= 2 and all(f in ("keyboard", "unknown") for f in families)
    return None


def texture(text: str, instrumentation: str) -> tuple[str, bool | None]:
    """(texture label, adherence to `instrumentation`) of one piece's text."""
    parts = parts_of(text)
    return describe(parts), adheres(instrumentation, parts)
