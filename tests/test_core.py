import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from reenactbook.core import (CheckpointError, CheckpointMismatchError, ConfigError, atomic_write, rng_state, seed_everything,
                              set_rng_state, write_text)
from reenactbook.config import Options, load_options
from reenactbook.checkpoints import load_checkpoint, load_module_state, save_checkpoint, torch_load


def test_config_overrides_and_json_round_trip(tmp_path):
    opts = load_options("tiny", ["run.seed=11", "run.device=cpu", "run.amp=no"])
    assert (opts.run.seed, opts.run.device, opts.run.amp) == (11, "cpu", False)
    opts2 = load_options("tiny", {"run.seed": 11, "run.device": "cpu", "run.amp": False})
    assert opts2.to_dict() == opts.to_dict()
    path = opts.save(tmp_path)
    assert json.loads(path.read_text())["run"]["seed"] == 11
    assert Options.load(tmp_path).to_dict() == opts.to_dict()


@pytest.mark.parametrize("override, message", [
    (["run.seed=abc"], "expected int"), (["run.nope=1"], "unknown option"), (["nosection.x=1"], "no section"),
    (["run.seed"], "section.option=value"), (["run.amp=maybe"], "expected true/false")])
def test_config_errors_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        load_options("tiny", override)


def test_profiles_differ_and_unknown_profile_fails():
    assert load_options("paper").run.num_workers != load_options("tiny").run.num_workers
    with pytest.raises(ConfigError, match="unknown profile"):
        load_options("large")


def test_atomic_write_survives_a_crash_mid_write(tmp_path):
    target = tmp_path / "ckpt.bin"
    write_text(target, "old contents")
    # a real crash: a child process killed while it is writing the new file
    code = f"""
import os
from reenactbook.core import atomic_write
with atomic_write({str(target)!r}) as f:
    f.write(b"new contents, half written")
    f.flush()
    os._exit(9)
"""
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == 9
    assert target.read_text() == "old contents"
    stale = {p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")}  # a killed writer leaves only a hidden temp file
    # an exception inside the block also keeps the old file and removes the temporary file
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old contents"
    assert {p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")} == stale


def _model(width=8):
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.ReLU(), torch.nn.Linear(width, 2))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    net = _model()
    optim = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    net(torch.randn(5, 4)).pow(2).mean().backward()
    optim.step()
    state = {"net": net.state_dict(), "optim": optim.state_dict(), "rng": rng_state(), "array": np.arange(6, dtype=np.int16),
             "nested": {"step": 3, "names": ["a", "b"], 7: (1.5, None)}}
    path = save_checkpoint(tmp_path / "run.safetensors", state, {"step": 3, "options": load_options("tiny").to_dict()})
    assert path.with_suffix(".json").exists()
    ck = load_checkpoint(path)
    assert ck.meta["step"] == 3 and ck.versions["torch"] == torch.__version__
    assert ck.state["nested"] == {"step": 3, "names": ["a", "b"], 7: (1.5, None)}
    assert ck.state["array"].dtype == np.int16 and ck.state["array"].tolist() == list(range(6))
    net2 = load_module_state(_model(), ck.state["net"], path)
    for a, b in zip(net.state_dict().values(), net2.state_dict().values()):
        assert torch.equal(a, b)
    optim2 = torch.optim.Adam(net2.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optim2.load_state_dict(ck.state["optim"])
    assert torch.equal(optim2.state_dict()["state"][0]["exp_avg"], optim.state_dict()["state"][0]["exp_avg"])


def test_checkpoint_mismatch_names_file_and_key(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", {"net": _model(8).state_dict()})
    with pytest.raises(CheckpointMismatchError, match=r"a\.safetensors.*'0\.weight' has shape \(8, 4\)"):
        load_module_state(_model(16), load_checkpoint(path).state["net"], path)
    extra = torch.nn.Sequential(_model(8), torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointMismatchError, match="key '0.0.weight' is missing from the file"):
        load_module_state(extra, load_checkpoint(path).state["net"], path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", {"net": _model().state_dict()})
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(tmp_path / "cut.safetensors")


def test_torch_load_is_weights_only(tmp_path):
    import pickle
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(Exception, match="weights_only"):
        torch_load(path)


def test_seeding_is_reproducible():
    def draw():
        return random.random(), float(np.random.rand()), torch.randn(3).tolist(), torch.nn.Linear(3, 3).weight.sum().item()
    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    state = rng_state()
    after = draw()
    set_rng_state(state)
    assert draw() == after


def test_read_json_names_the_file_and_uses_the_callers_errors(tmp_path):
    from reenactbook.core import CorruptWeightsError, MissingWeightsError, read_json
    with pytest.raises(MissingWeightsError, match=r"nothing\.json: no such weights manifest"):
        read_json(tmp_path / "nothing.json", "weights manifest", missing=MissingWeightsError, invalid=CorruptWeightsError)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CorruptWeightsError, match=r"bad\.json: not a valid weights manifest"):
        read_json(tmp_path / "bad.json", "weights manifest", missing=MissingWeightsError, invalid=CorruptWeightsError)
    with pytest.raises(ConfigError, match="not a valid options file"):
        read_json(tmp_path / "bad.json", "options file", missing=ConfigError)
    (tmp_path / "good.json").write_text('{"a": [1, 2]}')
    assert read_json(tmp_path / "good.json") == {"a": [1, 2]}


def test_torch_load_state_dict_refuses_other_objects(tmp_path):
    from reenactbook.core import CorruptWeightsError
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(CorruptWeightsError, match="expected a state_dict, found a list"):
        torch_load(tmp_path / "list.pt", state_dict=True)
    torch.save({"w": torch.ones(2)}, tmp_path / "sd.pt")
    assert torch.equal(torch_load(tmp_path / "sd.pt", state_dict=True)["w"], torch.ones(2))


# ---------------------------------------------------------------- devices (CUDA stubbed: there is no GPU in CI)
@pytest.fixture()
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)  # e.g. after torch.cuda.set_device(1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


@pytest.mark.parametrize("preference, index, expected", [
    ("auto", None, "cuda:1"), ("cuda", None, "cuda:1"), ("CUDA", None, "cuda:1"), ("cuda:0", None, "cuda:0"),
    ("auto", 0, "cuda:0"), ("cuda", 0, "cuda:0"), ("cuda:1", 0, "cuda:1"), (torch.device("cuda"), None, "cuda:1"),
    (torch.device("cuda", 0), 1, "cuda:0"), ("cpu", 1, "cpu")])
def test_cuda_devices_are_always_indexed(two_gpus, preference, index, expected):
    "set_device, DDP's device_ids and CUDA graphs need the index: the old get_device('auto') gave an unindexed 'cuda'."
    from reenactbook.core import amp_dtype, get_device
    device = get_device(preference, index=index)
    assert device == torch.device(expected) and (device.type != "cuda" or device.index is not None)
    assert amp_dtype(device) == (torch.bfloat16 if device.type == "cuda" else None)


def test_missing_gpus_are_clear_errors(two_gpus, monkeypatch):
    from reenactbook.core import get_device
    with pytest.raises(ConfigError, match="needs GPU 2, but this machine has 2 GPU"):
        get_device("cuda:2")
    with pytest.raises(ConfigError, match="nproc_per_node"):
        get_device("auto", index=3)  # LOCAL_RANK 3 on a 2-GPU node
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device("auto", index=3) == torch.device("cpu") or get_device("auto").type == "mps"
    with pytest.raises(ConfigError, match="CUDA is not available here"):
        get_device("cuda")
    with pytest.raises(ConfigError, match="unknown device 'tpu7'"):
        get_device("tpu7")


def test_every_section_is_declared_where_the_profile_table_says():
    from reenactbook.config import config_sections
    from reenactbook.profiles import PROFILE_CHANGES, SECTION_HOMES
    sections = config_sections()
    assert {name: sections[name].__module__ for name in SECTION_HOMES} == SECTION_HOMES
    for profile, rows in PROFILE_CHANGES.items():
        assert set(rows) <= set(SECTION_HOMES), profile


def test_a_section_the_table_promises_but_no_module_registers_is_a_clear_error(monkeypatch):
    from reenactbook.profiles import SECTION_HOMES
    monkeypatch.setitem(SECTION_HOMES, "ghost", "reenactbook.core")
    with pytest.raises(ConfigError, match="ghost"):
        load_options("tiny")
