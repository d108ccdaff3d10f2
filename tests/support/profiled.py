"""A small real profile: a short campaign on this machine with the real agent, then a fitted profile.

Session-scoped so the predictor, evaluation, API and CLI tests share one (≈20 s) campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

FAMILIES = ("conv", "depthwise_conv", "linear", "pool", "elementwise", "activation", "nb201", "mobilenetv2",
            "resnet")


@dataclass(frozen=True)
class Profiled:
    home: Path
    profile_path: Path
    models_dir: Path  # a few ONNX files never measured, for predictions


@pytest.fixture(scope="session")
def profiled(tmp_path_factory) -> Profiled:
    import os

    from edgecost.campaign import CampaignSettings, run_campaign
    from edgecost.devices import local_device
    from edgecost.bench import BenchSettings
    from edgecost.predictor.train import train_and_save
    from edgecost.records import Target
    from edgecost.store import Store
    from edgecost.transport import LocalSession

    home = tmp_path_factory.mktemp("profiled-home")
    old = os.environ.get("EDGECOST_HOME")
    os.environ["EDGECOST_HOME"] = str(home)
    try:
        bench = BenchSettings(warmup_runs=1, warmup_min_secs=0.0, num_runs=5, min_secs=0.02, max_secs=2.0,
                              profile_runs=3)
        settings = CampaignSettings(seed=5, families=FAMILIES, bench=bench, kernel_share=0.5, max_flops=60_000_000,
                                    large_share=0.0)
        store = Store()
        target = Target("local", "onnxruntime", 1)
        with LocalSession(local_device()) as s:
            run_campaign(s, target, store, budget_s=600, settings=settings, max_items=48)
        path = train_and_save(store, target, n_estimators=60, folds=3)
        models_dir = home / "unseen"
        models_dir.mkdir()
        import numpy as np

        from edgecost import convert, zoo

        rng = np.random.default_rng(1234)
        for fam in ("mobilenetv2", "resnet", "nb201"):
            convert.export_spec(zoo.sample(fam, rng, max_flops=60_000_000), models_dir, fmt="onnx")
    finally:
        if old is None:
            os.environ.pop("EDGECOST_HOME", None)
        else:
            os.environ["EDGECOST_HOME"] = old
    return Profiled(home=home, profile_path=path, models_dir=models_dir)
