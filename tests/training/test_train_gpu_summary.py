"""The ZeRO comparison's summary (benchmarks/train_gpu.py): runs made in separate calls merge into one table
whose differences are computed against the plain one-GPU run. Pure Python, no GPU."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_gpu():
    spec = importlib.util.spec_from_file_location("train_gpu", ROOT / "benchmarks" / "train_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_call(path, runs, device="GPU X", steps=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {"device": device, "gpus_visible": 2, "config": "benchmarks/zero_compare.yaml", "max_steps": steps,
               "runs": {name: {"exit_code": 0, "losses": losses} for name, losses in runs.items()}}
    path.write_text(json.dumps(results))      # JSON turns the integer step keys into strings, as on the device
    return path


def test_zero_merge_compares_runs_from_two_calls_with_the_one_gpu_run(train_gpu, tmp_path):
    steps = list(range(1, 31))
    plain = {s: 5.0 for s in steps}
    shifted = {s: 5.0 + (0.3 if s > 20 else 0.0) for s in steps}      # differs only in the last third
    first = write_call(tmp_path / "a" / "zero_compare.json", {"1gpu": plain, "2gpu-zero3": dict(plain)})
    second = write_call(tmp_path / "b" / "zero_compare.json", {"1gpu-seed1": shifted})
    train_gpu.zero_merge(tmp_path / "out", [first, second])
    merged = json.loads((tmp_path / "out" / "zero_compare.json").read_text())
    assert set(merged["runs"]) == {"1gpu", "2gpu-zero3", "1gpu-seed1"}
    assert merged["runs"]["2gpu-zero3"]["vs_1gpu"]["mean_abs_diff_smoothed_last_third"] == 0.0
    seed1 = merged["runs"]["1gpu-seed1"]["vs_1gpu"]
    # 10-step running means over steps 21-30 of a +0.3 step at 21: 0.03, 0.06, ..., 0.3 -> mean 0.165
    assert seed1["mean_abs_diff_smoothed_last_third"] == pytest.approx(0.165)
    assert seed1["max_abs_diff_raw"] == pytest.approx(0.3)
    assert seed1["steps_compared"] == 30
    assert (tmp_path / "out" / "zero_compare.png").stat().st_size > 0


def test_zero_merge_refuses_calls_from_another_device(train_gpu, tmp_path):
    first = write_call(tmp_path / "a" / "zero_compare.json", {"1gpu": {1: 5.0}})
    second = write_call(tmp_path / "b" / "zero_compare.json", {"1gpu-seed1": {1: 5.1}}, device="GPU Y")
    with pytest.raises(SystemExit, match="not comparable"):
        train_gpu.zero_merge(tmp_path / "out", [first, second])
