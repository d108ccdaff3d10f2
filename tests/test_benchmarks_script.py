"""scripts/benchmarks.py: a merge run replaces only the notes the script wrote itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("benchmarks_script", ROOT / "scripts" / "benchmarks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_merge_replaces_generated_notes_and_keeps_hand_written_ones_that_quote_its_commands():
    B = _script()
    generated = ("Targets ort1 re-run on 2026-12-07 with `python scripts/benchmarks.py --merge --targets ort1`; "
                 "kept as they were: ort2 (2026-12-06).")
    edited = ("Target ort2 re-run on 2026-12-06 with `python scripts/benchmarks.py --merge --targets ort2`; "
              "tflite1 kept as it was.")
    hand = ("2026-12-07, day: **ort1 from a fresh campaign** (`python scripts/benchmarks.py --merge --skip agreement "
            "--targets ort1`): random split 95.6 %.")
    speed = ("Prediction speed of ort1,tflite1 re-timed on 2026-12-07 with `python scripts/benchmarks.py "
             "--refresh-speed --targets ort1,tflite1` (same campaigns and profiles).")
    assert B._superseded(generated, ["tflite1"]) and B._superseded(edited, ["tflite1"])
    assert not B._superseded(hand, ["ort1"])  # a finding, not the script's own line
    assert B._superseded(speed, ["ort1", "tflite1", "ort2"]) and not B._superseded(speed, ["ort1"])
    assert not B._superseded("A note on --refresh-speed --targets ort1` and what it showed.", ["ort1"])
