"""MobileFaceNet (networks.mobilefacenet): the torch architecture reproduces the published ONNX network."""
import numpy as np
import pytest
import torch

from reenactbook.core import CheckpointMismatchError, CorruptWeightsError, WeightsError
from reenactbook.networks.mobilefacenet import MobileFaceNet, load_mobilefacenet


def test_architecture_matches_the_state_dict_keys_and_shapes(shared_weights):
    state = torch.load(shared_weights / "mobilefacenet_arcface_128.pt", map_location="cpu", weights_only=True)
    model = MobileFaceNet().state_dict()
    assert list(model) == list(state)
    assert all(model[k].shape == state[k].shape for k in state)


def test_torch_equals_onnx(shared_weights):
    import onnxruntime
    net = load_mobilefacenet(shared_weights / "mobilefacenet_arcface_128.pt")
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    session = onnxruntime.InferenceSession(str(shared_weights / "mobilefacenet_arcface_128.onnx"), providers=["CPUExecutionProvider"])
    x = torch.rand(4, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 2 - 1
    onnx_out = np.concatenate([session.run(None, {"input": x[i:i + 1].numpy()})[0] for i in range(4)])
    with torch.no_grad():
        torch_out = net(x).numpy()
    assert np.abs(torch_out - onnx_out).max() < 1e-4
    assert np.abs(onnx_out).max() > 0.5  # not a trivially small output


def test_gradients_flow_to_the_input(shared_weights):
    net = load_mobilefacenet(shared_weights / "mobilefacenet_arcface_128.pt")
    x = torch.rand(2, 3, 112, 112, requires_grad=True)
    net(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_wrong_files_are_refused(tmp_path):
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "linear.pt")
    with pytest.raises(CheckpointMismatchError, match="linear.pt"):
        load_mobilefacenet(tmp_path / "linear.pt")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CorruptWeightsError, match="state_dict"):
        load_mobilefacenet(tmp_path / "list.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="garbage.pt"):
        load_mobilefacenet(tmp_path / "garbage.pt")
