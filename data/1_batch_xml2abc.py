"""Stage 1: every MusicXML score (.xml / .musicxml / .mxl) and MIDI file (.mid / .midi) under a folder
-> standard ABC (MIDI through music21, quantised to sixteenths and eighth-note triplets).

Runs xml2abc with `-d 8 -c 6 -x` on all cores, with a per-file timeout; bad files are logged with
their reason and skipped; re-running converts only what is missing. Settings: config_xml2abc.py.
"""
import sys
from pathlib import Path

from notagen.abc.pipeline import beside, failure_log_beside, print_stage_result, xml2abc_folder  # noqa: E402
from notagen.settings import parse_settings, record_settings, run_stage  # noqa: E402

def main(argv=None) -> int:
    cfg = parse_settings(Path(__file__).with_name("config_xml2abc.py"), argv, description=__doc__)
    failure_log = cfg.failure_log or failure_log_beside(cfg.des_folder)
    report = xml2abc_folder(cfg.ori_folder, cfg.des_folder, workers=cfg.workers,
                            timeout=cfg.timeout, failure_log=failure_log, max_input_mb=cfg.max_input_mb)
    record_settings(cfg, beside(cfg.des_folder, "_settings.json"))  # `--config` repeats the run
    return print_stage_result(report, failure_log)

if __name__ == "__main__":
    sys.exit(run_stage(main))
