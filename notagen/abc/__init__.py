"""notagen.abc: the MusicXML <-> ABC data pipeline shared by data preparation, inference, RL and the demo.

Text functions (all accept and keep the `%period` / `%composer` / `%instrumentation` prompt lines):
    clean_abc(text) -> str                     spec 2; AbcError for voices with different bar counts
    interleave_abc(cleaned) -> str             spec 3, the CLaMP 2 format
    augment_abc(cleaned) -> {key: str}         spec 4, 15 keys (KEYS_15), rest-reduced
    reduce_abc(text) -> str                    cleaned + rest-reduced, in the piece's own key
    preprocess_abc(text) -> PreprocessedPiece  all of the above from one cleaning
    rest_unreduce(text) -> str                 spec 9, generated text -> every voice on every line
    strip_stream_prefixes(text), split_prompt_lines(text) -> (prompt lines, rest)
    check_bar_alignment(interleaved) -> bool   same bar count and bar durations in every voice
Conversions (ABC inputs may be generated: prompt lines, stream prefixes, rest-reduced):
    xml_file_to_abc(path), musicxml_to_abc(bytes)       xml2abc -d 8 -c 6 -x (MusicXML or MIDI files)
    midi_to_musicxml(path), score_file_to_musicxml(path) MIDI via music21 (quantised), MusicXML validated
    abc_to_musicxml(abc) -> str, abc_to_midi(abc, path), abc_to_svg_pages(abc) -> [svg]
    musicxml_to_midi(xml, path), musicxml_to_svg_pages(xml) -> [svg]   (safe from any thread)
Batch stages and the runner: xml2abc_folder, preprocess_folder, abc2xml_folder, run_batch, Task.
Every failure is an `AbcError` (a ValueError) whose message starts with a short reason.

Submodules load on first use, so importing this package costs nothing (abctoolkit builds a parser
grammar and music21 takes seconds to import).
"""
from __future__ import annotations

from notagen._lazy import lazy_exports

_EXPORTS = {
    "AbcError": "errors",
    "KEYS_15": "text", "split_prompt_lines": "text", "strip_stream_prefixes": "text",
    "clean_abc": "preprocess", "interleave_abc": "preprocess", "augment_abc": "preprocess",
    "preprocess_abc": "preprocess", "reduce_abc": "preprocess", "PreprocessedPiece": "preprocess",
    "rest_unreduce": "unreduce", "check_bar_alignment": "unreduce", "full_interleaved": "unreduce",
    "xml_file_to_abc": "convert", "midi_to_musicxml": "convert", "score_file_to_musicxml": "convert", "musicxml_to_abc": "convert", "read_musicxml": "convert",
    "read_abc_file": "convert", "abc_to_musicxml": "convert", "abc_to_midi": "convert",
    "abc_to_svg_pages": "convert", "musicxml_to_midi": "convert", "musicxml_to_svg_pages": "convert",
    "run_batch": "batch", "Task": "batch", "BatchReport": "batch",
    "xml2abc_folder": "pipeline", "preprocess_folder": "pipeline", "abc2xml_folder": "pipeline",
    "augmented_file": "pipeline",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
