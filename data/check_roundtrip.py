"""Round-trip check of a built corpus set: every interleaved piece -> MusicXML -> music21 must have
the same number of parts and measures as the original corpus score. Prints the pass rate and
writes every failing piece with its reason to <OUT_DIR>/<SET_NAME>_roundtrip_failures.log.
Settings: roundtrip_config.py.
"""
import sys
from pathlib import Path

from notagen.abc.roundtrip import check_corpus_roundtrip  # noqa: E402
from notagen.paths import resolve_output_dir  # noqa: E402
from notagen.settings import parse_settings  # noqa: E402

def main(argv=None) -> int:
    cfg = parse_settings(Path(__file__).with_name("roundtrip_config.py"), argv, description=__doc__)
    set_folder = resolve_output_dir(cfg.out_dir) / cfg.set_name
    failure_log = set_folder.parent / f"{set_folder.name}_roundtrip_failures.log"
    report = check_corpus_roundtrip(set_folder, workers=cfg.workers, timeout=cfg.timeout,
                                    failure_log=failure_log)
    checked = len(report.converted) + len(report.failures)
    print(f"round trip: {len(report.converted)} of {checked} pieces pass "
          f"({100 * len(report.converted) / max(checked, 1):.1f}%); {report.summary()}")
    for name, reason in report.failures:
        print(f"  FAIL {name}: {reason}")
    return 0 if checked and not report.failures else 1

if __name__ == "__main__":
    sys.exit(main())
