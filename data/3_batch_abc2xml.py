"""Stage 3: ABC files (standard, interleaved or generated) under a folder -> MusicXML.

Generated text is welcome: prompt lines are dropped, [r:i/j] stream prefixes stripped and
rest-reduced interleaved text gets its missing voices back before abc2xml converts it.
Settings: config_abc2xml.py.
"""
import sys
from pathlib import Path

from notagen.abc.pipeline import abc2xml_folder, beside, failure_log_beside, print_stage_result  # noqa: E402
from notagen.settings import parse_settings, record_settings, run_stage  # noqa: E402

def main(argv=None) -> int:
    cfg = parse_settings(Path(__file__).with_name("config_abc2xml.py"), argv, description=__doc__)
    failure_log = cfg.failure_log or failure_log_beside(cfg.des_folder)
    report = abc2xml_folder(cfg.ori_folder, cfg.des_folder, workers=cfg.workers,
                            timeout=cfg.timeout, failure_log=failure_log)
    record_settings(cfg, beside(cfg.des_folder, "_settings.json"))  # `--config` repeats the run
    return print_stage_result(report, failure_log)

if __name__ == "__main__":
    sys.exit(run_stage(main))
