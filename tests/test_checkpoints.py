"""Checkpoints are safetensors + JSON, written atomically; pickles are refused (and never run)."""

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from metalearn_kit import checkpoints


def test_round_trip_with_meta(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))
    path = checkpoints.save(tmp_path / "m.safetensors", model, {"seed": 3, "psnr": torch.tensor(31.5)})
    state, meta = checkpoints.load(path)
    assert meta == {"seed": 3, "psnr": 31.5}
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    fresh = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4))
    loaded, _ = checkpoints.load(path, model=fresh)
    assert torch.equal(loaded[0].weight, model[0].weight)


def test_wrong_model_and_bad_arguments(tmp_path):
    path = checkpoints.save(tmp_path / "m.safetensors", nn.Linear(3, 2), {})
    with pytest.raises(ValueError, match="does not fit model"):
        checkpoints.load(path, model=nn.Linear(4, 2))
    with pytest.raises(ValueError, match="path must end in .safetensors"):
        checkpoints.save(tmp_path / "m.bin", nn.Linear(3, 2))
    with pytest.raises(TypeError, match="model_or_state"):
        checkpoints.save(tmp_path / "x.safetensors", [1, 2, 3])
    with pytest.raises(TypeError, match="meta must be JSON"):
        checkpoints.save(tmp_path / "x.safetensors", nn.Linear(3, 2), {"f": object()})
    with pytest.raises(FileNotFoundError):
        checkpoints.load(tmp_path / "missing.safetensors")


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = checkpoints.save(tmp_path / "m.safetensors", nn.Linear(30, 20), {})
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        checkpoints.load(path)


class _Payload:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"weight": _Payload(marker)}, handle)
    with pytest.raises(ValueError, match="pickles"):
        checkpoints.load(evil)
    assert not marker.exists()
    # even with the explicit flag it goes through torch.load(weights_only=True), which refuses the payload
    with pytest.raises(ValueError, match="weights_only"):
        checkpoints.load(evil, allow_pickle=True)
    assert not marker.exists()


def test_plain_tensor_pickle_loads_with_the_flag(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, path)
    model, meta = checkpoints.load(path, model=nn.Linear(3, 2), allow_pickle=True)
    assert meta == {} and torch.equal(model.weight, torch.ones(2, 3))


def test_killed_while_saving_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    checkpoints.save(path, {"w": torch.zeros(10)}, {"version": 1})
    # a child saves large checkpoints in a loop; kill it at a random moment, many times over
    script = textwrap.dedent(f"""
        import torch, sys
        from metalearn_kit import checkpoints
        big = {{"w": torch.randn(4_000_000)}}
        print("ready", flush=True)
        while True:
            checkpoints.save({str(path)!r}, big, {{"version": 2}})
    """)
    for delay in (0.05, 0.2, 0.45):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        state, meta = checkpoints.load(path)  # whatever moment it died, a complete checkpoint is there
        assert (meta["version"], state["w"].numel()) in {(1, 10), (2, 4_000_000)}  # weights and meta agree
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # a killed writer can leave a temporary file (of the weights or of their JSON copy, written second), but
    # never a partial file under either final name
    assert all(name.startswith((".ckpt.safetensors.", ".ckpt.json.")) for name in leftovers), leftovers
    json.loads((tmp_path / "ckpt.json").read_text())
