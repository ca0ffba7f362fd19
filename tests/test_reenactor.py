"""The reenactor networks: G (pix2pixHD generator on [F_s, p_t]), the multi-scale D, input checks and checkpoints."""
import pytest
import torch

from reenactbook.core import CheckpointError, CheckpointMismatchError, ConfigError, InputError, ReenactbookError
from reenactbook.config import load_options
from reenactbook.checkpoints import save_checkpoint
from reenactbook.reenactor import (LocalEnhancer, MultiscaleDiscriminator, Reenactor, ReenactorConfig, ReenactorGenerator,
                                   count_parameters, forward_flops)

SMALL = dict(ngf=8, n_blocks=1, ndf=8)


@pytest.fixture(scope="module")
def tiny() -> Reenactor:
    torch.manual_seed(0)
    return Reenactor(load_options("tiny").reenactor)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_generator_shapes_and_range(tiny, size):
    with torch.inference_mode():
        y = tiny.generate(torch.rand(2, 3, size, size), torch.rand(2, 3, size, size))
    assert y.shape == (2, 3, size, size)
    assert y.dtype == torch.float32
    assert 0 <= y.min().item() and y.max().item() <= 1


def test_generator_non_square(tiny):
    with torch.inference_mode():
        assert tiny.generate(torch.rand(1, 3, 64, 96), torch.rand(1, 3, 64, 96)).shape == (1, 3, 64, 96)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_paper_profile_shapes(size):
    "The paper's G (182 M parameters) and D, shape-checked on the meta device (no compute)."
    config = load_options("paper").reenactor
    assert (config.image_size, config.ngf, config.n_downsampling, config.n_blocks, config.norm) == (256, 64, 4, 9, "instance")
    with torch.device("meta"):
        model = Reenactor(config)
        y = model.generate(torch.empty(2, 3, size, size), torch.empty(2, 3, size, size), check_range=False)
        outputs = model.discriminate(torch.empty(2, 3, size, size), torch.empty(2, 3, size, size), y)
    assert y.shape == (2, 3, size, size)
    assert len(outputs) == 2
    assert model.parameter_counts()["generator"] == 182_452_675


def test_local_enhancer_shapes():
    config = ReenactorConfig(image_size=128, ngf=4, n_blocks=1, n_local_enhancers=1, n_blocks_local=1, ndf=4)
    g = ReenactorGenerator(config)
    assert isinstance(g.net, LocalEnhancer)
    assert config.size_multiple == 8
    assert g(torch.rand(1, 6, 128, 128)).shape == (1, 3, 128, 128)
    with pytest.raises(InputError, match="not divisible by 8"):
        g(torch.rand(1, 6, 124, 124))


def test_source_is_broadcast_over_sketches(tiny):
    source, sketches = torch.rand(1, 3, 64, 64), torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        batched = tiny.generate(source, sketches)
        one = tiny.generate(source, sketches[1:2])
    assert batched.shape == (3, 3, 64, 64)
    torch.testing.assert_close(batched[1:2], one, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("source, sketch, message", [
    (torch.rand(1, 4, 64, 64), torch.rand(1, 3, 64, 64), "source image F_s: expected 3 channels, got 4"),
    (torch.rand(1, 3, 64, 64), torch.rand(1, 1, 64, 64), "target sketch p_t: expected 3 channels, got 1"),
    (torch.rand(3, 64, 64), torch.rand(1, 3, 64, 64), r"expected a float tensor \[B, 3, H, W\]"),
    (torch.rand(1, 3, 66, 64), torch.rand(1, 3, 66, 64), "size 66x64 is not divisible by 4"),
    (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 32, 32), "must have the same height and width"),
    (torch.rand(2, 3, 64, 64), torch.rand(3, 3, 64, 64), "source batch 2 must be 1 or equal the sketch batch 3"),
    (torch.rand(1, 3, 64, 64) * 255, torch.rand(1, 3, 64, 64), r"values must be in \[0.0, 1.0\].*divide \[0, 255\]"),
    (torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64), r"map \[-1, 1\] images with \(x \+ 1\) / 2"),
    (torch.full((1, 3, 64, 64), float("nan")), torch.rand(1, 3, 64, 64), "values must be in"),
    ((torch.rand(1, 3, 64, 64) * 255).to(torch.uint8), torch.rand(1, 3, 64, 64), "convert uint8 images"),
    ([[0.5]], torch.rand(1, 3, 64, 64), "got a list"),
])
def test_generate_rejects_bad_input(tiny, source, sketch, message):
    with pytest.raises(InputError, match=message) as info:
        tiny.generate(source, sketch)
    assert isinstance(info.value, ReenactbookError)


def test_generator_module_rejects_wrong_channels(tiny):
    with pytest.raises(InputError, match="expected 6 channels, got 3.*x = \\[F_s, p_t\\]"):
        tiny.generator(torch.rand(1, 3, 64, 64))


def test_discriminator_scales_and_features():
    config = ReenactorConfig(ndf=8, n_layers_d=3, num_d=3)
    d = MultiscaleDiscriminator(config)
    outputs = d(torch.rand(2, 6, 64, 64), torch.rand(2, 3, 64, 64))
    assert len(outputs) == 3
    for scale, features in enumerate(outputs):
        assert len(features) == config.n_layers_d + 2  # n_layers_d + 1 intermediate features and the scores
        assert [f.shape[1] for f in features] == [8, 16, 32, 64, 1]
        assert all(f.shape[0] == 2 for f in features)
    # each scale sees the image at half the previous resolution
    assert [o[0].shape[-1] for o in outputs] == [33, 17, 9]


def test_discriminator_channel_cap_and_condition():
    d = MultiscaleDiscriminator(ReenactorConfig(ndf=256, n_layers_d=3, num_d=1))
    assert [f.shape[1] for f in d(torch.rand(1, 6, 32, 32), torch.rand(1, 3, 32, 32))[0]] == [256, 512, 512, 512, 1]
    with pytest.raises(InputError, match="discriminator condition.*expected 6 channels"):
        d(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(InputError, match="same batch size and image size"):
        d(torch.rand(1, 6, 32, 32), torch.rand(1, 3, 64, 64))


def test_discriminator_is_conditioned_on_the_input():
    torch.manual_seed(0)
    d = MultiscaleDiscriminator(ReenactorConfig(ndf=8, num_d=1))
    image = torch.rand(1, 3, 32, 32)
    a = d(torch.rand(1, 6, 32, 32), image)[0][-1]
    b = d(torch.rand(1, 6, 32, 32), image)[0][-1]
    assert not torch.allclose(a, b)


def test_normal_init():
    torch.manual_seed(0)
    model = Reenactor(ReenactorConfig(ngf=32, n_blocks=2, ndf=32))
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    biases = torch.cat([m.bias.flatten() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001
    assert biases.abs().max().item() == 0


def test_gradients_reach_every_generator_weight(tiny):
    tiny.zero_grad(set_to_none=True)
    y = tiny.generate(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    y.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny.generator.parameters())
    tiny.zero_grad(set_to_none=True)


def test_channels_last_gives_the_same_images():
    "G and D run on channels_last weights and inputs (the GPU layout) and give the numbers of the default layout."
    torch.manual_seed(0)
    plain = Reenactor(ReenactorConfig(**SMALL))
    fast = Reenactor(ReenactorConfig(**SMALL, channels_last=True))
    fast.load_state_dict(plain.state_dict())
    fast.to(memory_format=torch.channels_last)
    assert fast.generator.net.features[1].weight.is_contiguous(memory_format=torch.channels_last)
    source, sketch = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    as_nhwc = lambda t: t.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fast.generate(as_nhwc(source), as_nhwc(sketch)), plain.generate(source, sketch),
                                   atol=1e-5, rtol=1e-4)
        for a, b in zip(fast.discriminate(as_nhwc(source), sketch, as_nhwc(sketch)), plain.discriminate(source, sketch, sketch)):
            torch.testing.assert_close(a[-1], b[-1], atol=1e-5, rtol=1e-4)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Reenactor(ReenactorConfig(**SMALL, num_d=3))
    path = model.save(tmp_path / "reenactor.safetensors", {"step": 5})
    loaded = Reenactor.from_checkpoint(path)
    assert loaded.config == model.config and loaded.discriminator is not None
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    generator_only = Reenactor.from_checkpoint(path, discriminator=False)
    assert generator_only.discriminator is None
    source, sketch = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(generator_only.generate(source, sketch), model.generate(source, sketch))


def test_checkpoint_written_by_a_training_loop(tmp_path):
    "A training loop stores the whole run's options and more state; from_checkpoint finds G and the config in it."
    options = load_options("tiny", ["reenactor.ngf=8", "reenactor.n_blocks=1", "reenactor.ndf=8"])
    model = Reenactor(options.reenactor)
    optim = torch.optim.Adam(model.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    path = save_checkpoint(tmp_path / "step.safetensors",
                           {**model.state(), "optim_g": optim.state_dict()}, {"options": options.to_dict(), "step": 1})
    loaded = Reenactor.from_checkpoint(path)
    assert loaded.config == options.reenactor
    assert torch.equal(loaded.generator.net.head[1].weight, model.generator.net.head[1].weight)


def test_checkpoint_errors(tmp_path):
    model = Reenactor(ReenactorConfig(**SMALL))
    path = model.save(tmp_path / "a.safetensors")
    bad_meta = save_checkpoint(tmp_path / "b.safetensors", model.state(), {"reenactor": {**model.config.to_dict(), "ngf": 16}})
    with pytest.raises(CheckpointMismatchError, match="b.safetensors: architecture mismatch"):
        Reenactor.from_checkpoint(bad_meta)
    no_meta = save_checkpoint(tmp_path / "c.safetensors", model.state(), {})
    with pytest.raises(CheckpointError, match="no reenactor config"):
        Reenactor.from_checkpoint(no_meta)
    no_generator = save_checkpoint(tmp_path / "d.safetensors", {"lsg": {}}, {"reenactor": model.config.to_dict()})
    with pytest.raises(CheckpointError, match="no 'generator' weights"):
        Reenactor.from_checkpoint(no_generator)
    g_only = Reenactor(ReenactorConfig(**SMALL), discriminator=False).save(tmp_path / "e.safetensors")
    with pytest.raises(CheckpointError, match="holds only the generator"):
        Reenactor.from_checkpoint(g_only, discriminator=True)
    with pytest.raises(ConfigError, match="without a discriminator"):
        Reenactor.from_checkpoint(g_only).discriminate(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert Reenactor.from_checkpoint(path) is not None


def test_config_checks_and_profiles():
    with pytest.raises(ConfigError, match="image_size=100 is not divisible by 2\\^\\(n_downsampling"):
        load_options("tiny", ["reenactor.image_size=100", "reenactor.n_downsampling=3"])
    with pytest.raises(ConfigError, match="reenactor.norm must be one of"):
        ReenactorConfig(norm="group")
    with pytest.raises(ConfigError, match="reenactor.ngf must be >= 1"):
        ReenactorConfig(ngf=0)
    tiny, paper = load_options("tiny").reenactor, load_options("paper").reenactor
    assert (tiny.ngf, tiny.n_downsampling, tiny.n_blocks) == (16, 2, 3)
    assert (paper.ndf, paper.n_layers_d, paper.num_d) == (64, 3, 2)


def test_parameter_and_flop_counts():
    model = Reenactor(ReenactorConfig(**SMALL))
    counts = model.parameter_counts()
    assert counts["generator"] == count_parameters(model.generator) > 0
    assert counts["discriminator"] == count_parameters(model.discriminator) > 0
    one = forward_flops(model.generator, torch.rand(1, 6, 32, 32))
    assert forward_flops(model.generator, torch.rand(2, 6, 32, 32)) == 2 * one
    assert forward_flops(model.generator, torch.rand(1, 6, 64, 64)) == 4 * one


# ---------------------------------------------------------------- fast inference (reenactor.InferenceGenerator)
def test_inference_generator_chunks_any_length():
    from reenactbook.reenactor import InferenceGenerator
    torch.manual_seed(0)
    model = Reenactor(ReenactorConfig(**SMALL)).train()
    inputs = torch.rand(7, 6, 32, 32)
    run = InferenceGenerator(model, "cpu", batch_size=3)  # a Reenactor: its G is used
    assert not run.fast and not run.channels_last and run.generator is model.generator
    out = run(inputs)
    assert out.shape == (7, 3, 32, 32) and out.dtype == torch.float32 and not out.requires_grad
    with torch.no_grad():
        expected = model.generator.eval()(inputs)
    torch.testing.assert_close(out, expected)
    assert run(inputs[:1]).shape == (1, 3, 32, 32)
    assert model.generator.train().training and run(inputs[:2]) is not None and model.generator.training  # mode restored
    with pytest.raises(InputError, match="expected 6 channels"):
        run(inputs[:, :3])
    with pytest.raises(InputError, match="not divisible by 4"):
        run(torch.rand(1, 6, 30, 32))
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        InferenceGenerator(model, "cpu", batch_size=0)


def test_fast_inference_pads_the_last_chunk_to_one_shape(monkeypatch):
    "fast=True (the CUDA default; here on the CPU with the compiler stubbed): bf16, every chunk the same shape, float32 out."
    from reenactbook.reenactor import InferenceGenerator
    shapes, dtypes = [], []

    def fake_compile(module, **kwargs):
        def run(x):
            shapes.append(tuple(x.shape))
            out = module(x)
            dtypes.append(out.dtype)
            return out
        return run
    monkeypatch.setattr(torch, "compile", fake_compile)
    torch.manual_seed(0)
    generator = ReenactorGenerator(ReenactorConfig(**SMALL)).eval()
    inputs = torch.rand(10, 6, 32, 32)
    out = InferenceGenerator(generator, "cpu", batch_size=4, fast=True)(inputs)
    assert shapes == [(4, 6, 32, 32)] * 3  # 4 + 4 + 2 padded to 4: a compiled graph never sees a new shape
    assert dtypes == [torch.bfloat16] * 3 and out.dtype == torch.float32 and out.shape == (10, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(out, generator(inputs), atol=0.03, rtol=0)  # bf16 precision
