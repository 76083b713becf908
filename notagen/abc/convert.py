"""Conversions at the edges of the pipeline: MusicXML -> standard ABC, and ABC -> MusicXML / MIDI / SVG.

Design choices:
- Vree's xml2abc and abc2xml (shipped by abctoolkit) run in-process, not as subprocesses: a
  process start costs more than converting a chorale. Both print instead of raising; their
  chatter is captured and becomes the detail of the `AbcError`. A hung conversion is the batch
  runner's business (it kills the worker after its timeout), not this module's.
- Inputs are checked before conversion, so a bad file gets a precise reason instead of an xml2abc
  traceback: empty file, corrupted .mxl, wrong encoding, not XML, not MusicXML.
- In an .mxl archive the score is the first non-META `.xml` member, xml2abc's own rule (it decides
  which text the published data holds); `META-INF/container.xml` is the fallback.
- MusicXML that xml2abc cannot read though its meaning fits ABC is rewritten first, as little as
  possible (`xml2abc_readable`; a file without such marks goes in byte for byte): pedal marks of
  type `discontinue` / `resume` (MuseScore 4 writes them) become `stop` / `start`, a pedal
  `change` and a wedge or octave-shift `continue` are dropped, the accidentals `natural-sharp` /
  `natural-flat` become `sharp` / `flat`, and a metronome mark without a tempo number (a metric
  modulation such as quarter = eighth) is dropped. Each of them stops xml2abc with an exception.
- ABC inputs may be generated text: prompt lines are dropped, stream prefixes stripped and
  rest-reduced interleaved text is restored (`rest_unreduce`) before abc2xml sees it.
- MIDI: each part plays the General MIDI program its name says (`notagen.texture.gm_program`:
  strings, voices, piano, ...) unless the MusicXML names one; a key signature beyond 7 sharps or
  flats, which a MIDI file cannot hold (mido, and so pretty_midi, refuse to read "11 flats"), is
  written as its enharmonic equivalent (11 flats -> 1 sharp). The sounding pitches are the same.
"""
from __future__ import annotations

import io
import re
import warnings
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path
from types import SimpleNamespace

from ..io import atomic_open
from ..texture import gm_program, name_family
from .errors import AbcError, captured_output, last_lines
from .text import is_interleaved, split_prompt_lines, strip_stream_prefixes
from .unreduce import full_interleaved

# xml2abc options used for all data (spec section 1): L:1/8, credit filter 6, no line breaks.
XML2ABC_ARGS = ["-d", "8", "-c", "6", "-x"]
MUSICXML_SUFFIXES = (".xml", ".musicxml", ".mxl")
MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = MUSICXML_SUFFIXES + MIDI_SUFFIXES  # what stage 1 converts
MAX_INPUT_MB = 64.0  # a score file, or the MusicXML inside an .mxl, larger than this is refused (memory bound)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _xml2abc_options() -> SimpleNamespace:
    """The option object xml2abc's command line would build from XML2ABC_ARGS."""
    return SimpleNamespace(d=8, c=6, x=True,  # the three options the data uses
                           u=None, m=0, n=0, b=0, o="", v=0, p=[], j=None, t=None, s=None,
                           v1=None, ped=True, stm=False, i=None)


# ---------------------------------------------------------------- MusicXML -> ABC

# (element, type xml2abc rejects) -> the type it reads with that meaning; None: drop the element
_DIRECTION_REWRITES = {(b"pedal", b"discontinue"): b"stop", (b"pedal", b"resume"): b"start",
                       (b"pedal", b"change"): None, (b"wedge", b"continue"): None,
                       (b"octave-shift", b"continue"): None}
_DIRECTION = re.compile(rb"""<(pedal|wedge|octave-shift)\b([^>]*?)\btype=(["'])([\w-]+)\3([^>]*?)(/>|>\s*</\1>)""")
_MIXED_ACCIDENTAL = re.compile(rb"(<accidental\b[^>]*>)\s*natural-(sharp|flat)\s*(</accidental>)")
_METRONOME = re.compile(rb"<metronome\b[^>]*(?<!/)>.*?</metronome>", flags=re.DOTALL)


def _rewrite_direction(match: re.Match) -> bytes:
    element, before, quote, kind, after, end = match.groups()
    if (element, kind) not in _DIRECTION_REWRITES:
        return match.group(0)
    new_kind = _DIRECTION_REWRITES[element, kind]
    return b"" if new_kind is None else b"<%s%stype=%s%s%s%s%s" % (element, before, quote, new_kind, quote, after, end)


def xml2abc_readable(data: bytes) -> bytes:
    """MusicXML with the marks that stop xml2abc rewritten (see the module docstring)."""
    if b"discontinue" in data or b"resume" in data or b"change" in data or b"continue" in data:
        data = _DIRECTION.sub(_rewrite_direction, data)
    if b"natural-" in data:
        data = _MIXED_ACCIDENTAL.sub(rb"\1\2\3", data)
    if b"<metronome" in data:
        data = _METRONOME.sub(lambda match: match.group(0) if b"<per-minute" in match.group(0) else b"", data)
    return data


def _limit(max_mb: float) -> int:
    return int(max_mb * 2**20)


def _mxl_member(data: bytes, max_mb: float = MAX_INPUT_MB) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            candidates = [name for name in names
                          if not name.startswith("META") and name.lower().endswith(".xml")]
            if not candidates and "META-INF/container.xml" in names:
                root = ElementTree.fromstring(archive.read("META-INF/container.xml"))
                candidates = [node.get("full-path") for node in root.iter("rootfile")
                              if node.get("full-path") in names]
            if not candidates:
                raise AbcError("corrupted .mxl", "the archive holds no MusicXML file")
            limit = _limit(max_mb)
            declared = archive.getinfo(candidates[0]).file_size
            with archive.open(candidates[0]) as member:  # the header may lie: read at most the limit
                content = member.read(limit + 1)
            if declared > limit or len(content) > limit:
                raise AbcError("too large", f"{candidates[0]} inflates to more than {max_mb:g} MB "
                                            f"(declared {declared / 2**20:.0f} MB; the limit is max_input_mb)")
            return content
    except AbcError:
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, ... from a damaged archive
        raise AbcError("corrupted .mxl", f"{type(exc).__name__}: {exc}") from None


def _check_encoding(data: bytes) -> None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        declared = _DECLARED_ENCODING.match(data.lstrip(b"\xef\xbb\xbf"))
        encoding = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        data.decode(encoding)
    except LookupError:
        raise AbcError("wrong encoding", f"unknown encoding {encoding!r} declared") from None
    except UnicodeDecodeError as exc:
        raise AbcError("wrong encoding", f"declared {encoding}, but byte 0x{data[exc.start]:02x} "
                                         f"at offset {exc.start} is not {encoding}") from None


def _check_musicxml_root(data: bytes) -> None:
    try:
        _, root = next(ElementTree.iterparse(io.BytesIO(data), events=("start",)))
    except ElementTree.ParseError as exc:
        raise AbcError("not XML", str(exc)) from None
    except StopIteration:
        raise AbcError("not XML", "no element") from None
    if root.tag == "score-timewise":
        raise AbcError("not MusicXML", "score-timewise is not supported (convert it to partwise)")
    if root.tag != "score-partwise":
        raise AbcError("not MusicXML", f"root element is <{root.tag}>, not <score-partwise>")


def musicxml_bytes(data: bytes, compressed: bool = False, max_mb: float = MAX_INPUT_MB) -> bytes:
    """Validate (and for .mxl unpack) MusicXML; raise AbcError with the reason it is unusable."""
    if not data.strip():
        raise AbcError("empty file")
    if compressed:
        data = _mxl_member(data, max_mb)
        if not data.strip():
            raise AbcError("empty file", "the MusicXML inside the .mxl is empty")
    _check_encoding(data)
    _check_musicxml_root(data)
    return data


def read_musicxml(path: str | Path, max_mb: float = MAX_INPUT_MB) -> bytes:
    """The MusicXML text of a `.xml` / `.musicxml` / `.mxl` file, validated; files (and .mxl
    contents) over `max_mb` are refused before they are read into memory."""
    path = Path(path)
    size = path.stat().st_size
    if size > _limit(max_mb):
        raise AbcError("too large", f"{size / 2**20:.0f} MB file, the limit is {max_mb:g} MB (max_input_mb)")
    return musicxml_bytes(path.read_bytes(), compressed=path.suffix.lower() == ".mxl", max_mb=max_mb)


def musicxml_to_abc(data: bytes, name: str = "score.xml") -> str:
    """Uncompressed MusicXML -> standard ABC exactly as `xml2abc -d 8 -c 6 -x` prints it."""
    from abctoolkit import xml2abc
    data = xml2abc_readable(musicxml_bytes(data))  # a precise reason for bad input rather than an xml2abc traceback
    options = _xml2abc_options()
    output = io.StringIO()
    with captured_output() as chatter:
        # xml2abc's converter reads the output object from a module global and prints to stdout
        xml2abc.abcOut = xml2abc.ABCoutput(str(Path(name).with_suffix(".abc")), "", 0, options)
        xml2abc.abcOut.outfile = output
        try:
            xml2abc.Parser(options).parse(io.BytesIO(data))
        except ElementTree.ParseError as exc:
            raise AbcError("not XML", str(exc)) from None
        except Exception as exc:
            raise AbcError("xml2abc failed", f"{type(exc).__name__}: {exc}") from None
    text = output.getvalue()
    if not text.strip():
        raise AbcError("no ABC output", last_lines(chatter.getvalue()) or "xml2abc wrote nothing")
    return text


def midi_to_musicxml(path: str | Path, max_mb: float = MAX_INPUT_MB) -> bytes:
    """A MIDI file -> MusicXML through music21, whose MIDI reader quantises onsets and durations to
    sixteenth notes and eighth-note triplets (its default quarterLengthDivisors (4, 3))."""
    from music21 import converter
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    path = Path(path)
    size = path.stat().st_size
    if size > _limit(max_mb):
        raise AbcError("too large", f"{size / 2**20:.0f} MB file, the limit is {max_mb:g} MB (max_input_mb)")
    try:
        with captured_output():
            score = converter.parse(str(path), format="midi")
            return GeneralObjectExporter(score).parse()
    except Exception as exc:  # noqa: BLE001 - music21's MIDI reader raises many types
        raise AbcError("not MIDI", f"{type(exc).__name__}: {exc}") from None


def score_file_to_musicxml(path: str | Path, max_mb: float = MAX_INPUT_MB) -> bytes:
    """The validated MusicXML of a MusicXML (.xml, .musicxml, .mxl) or MIDI (.mid, .midi) file."""
    if Path(path).suffix.lower() in MIDI_SUFFIXES:
        return musicxml_bytes(midi_to_musicxml(path, max_mb))
    return read_musicxml(path, max_mb)


def xml_file_to_abc(path: str | Path, max_mb: float = MAX_INPUT_MB) -> str:
    """A MusicXML or MIDI file -> standard ABC (stage 1 on one file)."""
    return musicxml_to_abc(score_file_to_musicxml(path, max_mb), Path(path).name)


# ---------------------------------------------------------------- ABC -> MusicXML, MIDI, SVG

def read_abc_file(path: str | Path) -> str:
    """An ABC file as text; it must be UTF-8 (what the pipeline writes), else AbcError."""
    size = Path(path).stat().st_size
    if size > _limit(MAX_INPUT_MB):
        raise AbcError("too large", f"{size / 2**20:.0f} MB file, the limit is {MAX_INPUT_MB:g} MB")
    data = Path(path).read_bytes()
    if not data.strip():
        raise AbcError("empty file")
    try:
        return data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise AbcError("wrong encoding", f"not UTF-8: byte 0x{data[exc.start]:02x} "
                                         f"at offset {exc.start}") from None


def playable_abc(abc_text: str) -> str:
    """Drop prompt lines and stream prefixes; give rest-reduced interleaved text all its voices back."""
    _, body = split_prompt_lines(abc_text)
    body = full_interleaved(body) if is_interleaved(body) else strip_stream_prefixes(body)
    if not body.strip():
        raise AbcError("empty ABC", "no tune after the prompt lines")
    return body


def _abc2xml_module():
    """Vree's abc2xml, imported quietly: building its grammar trips pyparsing deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from abctoolkit import abc2xml
    return abc2xml


def abc_to_musicxml(abc_text: str) -> str:
    """Standard or interleaved ABC (generated text welcome) -> a MusicXML document string."""
    abc2xml = _abc2xml_module()
    body = playable_abc(abc_text)
    with captured_output() as chatter:
        try:
            documents = abc2xml.getXmlDocs(body)
        except Exception as exc:
            raise AbcError("abc2xml failed", f"{type(exc).__name__}: {exc}") from None
    if not documents:
        raise AbcError("abc2xml failed", last_lines(chatter.getvalue()) or "no score produced")
    if next(documents[0].iter("note"), None) is None:  # abc2xml skips what it cannot parse
        raise AbcError("no notes", last_lines(chatter.getvalue()) or "abc2xml found no notes or rests")
    return abc2xml.fixDoctype(documents[0])


def musicxml_to_score(musicxml: str):
    """A music21 Score from a MusicXML string."""
    from music21 import converter
    try:
        with captured_output():
            return converter.parseData(musicxml, format="musicxml")
    except Exception as exc:
        raise AbcError("music21 failed", f"{type(exc).__name__}: {exc}") from None


def _drop_repeats(score) -> None:
    """Turn repeat barlines into plain ones and drop voltas, so music21 plays the score straight through."""
    from music21 import bar, spanner, stream
    for measure in score.recurse().getElementsByClass(stream.Measure):
        if isinstance(measure.leftBarline, bar.Repeat):
            measure.leftBarline = None
        if isinstance(measure.rightBarline, bar.Repeat):
            measure.rightBarline = bar.Barline("regular")
    for bracket in list(score.recurse().getElementsByClass(spanner.RepeatBracket)):
        score.remove(bracket, recurse=True)


MIDI_MAX_ACCIDENTALS = 7  # a MIDI key signature holds -7 (7 flats) .. 7 sharps


def _respell_wide_keys(score) -> None:
    """Key signatures beyond 7 sharps or flats become their enharmonic equivalent, 12 fifths
    around the circle (Fb minor, 11 flats -> E minor, 1 sharp): only the MIDI meta event changes,
    the notes keep their pitches. The score is the MIDI writer's own copy, so a Key's tonic may stay."""
    from music21 import key
    for signature in score.recurse().getElementsByClass(key.KeySignature):
        while signature.sharps > MIDI_MAX_ACCIDENTALS:
            signature.sharps -= 12
        while signature.sharps < -MIDI_MAX_ACCIDENTALS:
            signature.sharps += 12


def _set_programs(score) -> None:
    """Each part's General MIDI program from its name (strings, voices, piano; unknown: piano),
    where the MusicXML gave none. Voices: choir when several parts sing, a solo voice otherwise."""
    from music21 import instrument
    names = [part.partName or "" for part in score.parts]
    sung = sum(name_family(name) == "voice" for name in names)
    for part, name in zip(score.parts, names):
        instruments = list(part.recurse().getElementsByClass(instrument.Instrument))
        if not instruments:
            instruments = [instrument.Instrument()]
            part.insert(0, instruments[0])
        for played in instruments:
            if played.midiProgram is None:
                played.midiProgram = gm_program(name, sung)


def musicxml_to_midi(musicxml: str, path: str | Path) -> Path:
    """MusicXML -> MIDI file at `path` (music21), written atomically.

    Repeats are played as written; where music21 cannot expand them (generated text often has
    unbalanced repeat signs) the score is played straight through instead of failing. Parts get
    their General MIDI programs from their names and wide keys are respelled (module notes).
    """
    from music21.midi.translate import streamToMidiFile
    from music21.repeat import ExpanderException
    score = musicxml_to_score(musicxml)
    _respell_wide_keys(score)
    _set_programs(score)
    try:
        with captured_output():
            try:
                midi_bytes = streamToMidiFile(score).writestr()
            except ExpanderException:
                _drop_repeats(score)
                midi_bytes = streamToMidiFile(score).writestr()
    except Exception as exc:
        raise AbcError("MIDI export failed", f"{type(exc).__name__}: {exc}") from None
    with atomic_open(path, "wb") as handle:
        handle.write(midi_bytes)
    return Path(path)


def abc_to_midi(abc_text: str, path: str | Path) -> Path:
    """ABC -> MIDI file at `path` (through MusicXML and music21), written atomically."""
    return musicxml_to_midi(abc_to_musicxml(abc_text), path)


def _verovio_toolkit(options: dict | None):
    """A verovio toolkit that can engrave from any thread.

    verovio keeps its resource path (fonts) per thread and only the importing thread gets the
    right one: a toolkit made in a server's worker thread cannot load its fonts and a later render
    may crash. So the path is set explicitly on every toolkit, and every return value is checked.
    """
    import verovio
    verovio.enableLog(verovio.LOG_OFF)  # verovio logs from C++, past Python's redirection
    resources = Path(verovio.__file__).resolve().parent / "data"
    toolkit = verovio.toolkit(False)  # False: do not load the (thread-local) default resources
    if not resources.is_dir() or not toolkit.setResourcePath(str(resources)):
        raise AbcError("verovio failed", f"cannot load its fonts from {resources}")
    if not toolkit.setOptions({"adjustPageHeight": True, **(options or {})}):
        raise AbcError("verovio failed", f"options not accepted: {options}")
    return toolkit


def musicxml_to_svg_pages(musicxml: str, options: dict | None = None) -> list[str]:
    """MusicXML -> one SVG document per engraved page (verovio); safe from any thread."""
    toolkit = _verovio_toolkit(options)
    if not toolkit.loadData(musicxml):
        raise AbcError("verovio failed", "verovio could not read the MusicXML")
    pages = [toolkit.renderToSVG(page) for page in range(1, toolkit.getPageCount() + 1)]
    if not pages or not all(page.lstrip().startswith(("<svg", "<?xml")) for page in pages):
        raise AbcError("verovio failed", "no page rendered")
    return pages


def abc_to_svg_pages(abc_text: str, options: dict | None = None) -> list[str]:
    """ABC -> one SVG document per engraved page (verovio reads the MusicXML: its own ABC reader
    collapses the voices)."""
    return musicxml_to_svg_pages(abc_to_musicxml(abc_text), options)
