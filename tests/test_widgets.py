"""The interactive landmark demo (reenactbook.widgets), driven headless from Python: sliders set by name or through the
widgets, the landmarks, sequences, images and similarities they produce, bad input, and real photos."""
import io

import numpy as np
import pytest
import torch

from reenactbook.core import InputError
from reenactbook.alignment import ATTRIBUTES, head_pose
from reenactbook.lsg import LandmarkSequenceGenerator
from reenactbook.reenactor import Reenactor, ReenactorConfig
from reenactbook.widgets import CONTROLS, LandmarkDemo, Debouncer
from reenactbook.editing import edit_landmarks, fit_face, identity_similarity, landmark_similarity, make_source, render_synthetic

SIZE = 128


@pytest.fixture(scope="module")
def lsg():
    "An untrained G_l with a small random shift, so that LSG differs from LI (training is tested in test_lsg)."
    torch.manual_seed(0)
    model = LandmarkSequenceGenerator(68, hidden=16, k=8)
    with torch.no_grad():
        model.net.to_shift.bias.normal_(0, 0.02)
    return model


@pytest.fixture(scope="module")
def reenactor_path(tmp_path_factory):
    torch.manual_seed(0)
    model = Reenactor(ReenactorConfig(image_size=64, ngf=4, n_blocks=1, ndf=4), discriminator=False)
    return model.save(tmp_path_factory.mktemp("reenactor") / "reenactor.safetensors")


def pooled_colours(images):
    "A stand-in identity embedder: unit vectors of 4x4 average-pooled colours (deterministic and fast)."
    return torch.nn.functional.normalize(torch.nn.functional.adaptive_avg_pool2d(images, 4).flatten(1), dim=-1)


@pytest.fixture(scope="module")
def demo(lsg):
    return LandmarkDemo("synthetic:3", lsg=lsg, reenactor=None, identity=None, size=SIZE, device="cpu")


@pytest.fixture()
def fresh(demo):
    demo.reset()
    return demo


def nose_width(points):
    return np.ptp(points[31:36, 0])


def test_state_and_unedited_outputs(fresh):
    state = fresh.state
    assert set(state) == {"source", "expression", *CONTROLS} and state["source"] == "synthetic:3" and state["k"] == 8
    out = fresh.outputs
    np.testing.assert_array_equal(out["landmarks"], out["source_landmarks"])  # no edit: p_t = p_s
    assert out["source_image"].shape == (SIZE, SIZE, 3) and out["source_image"].dtype == np.uint8
    assert out["sketches"].shape == (3, SIZE, SIZE, 3) and out["sketches"].dtype == np.uint8
    sims = out["similarity"]["landmarks"]
    assert sims["target"] == pytest.approx(1.0) and np.allclose(sims["li"], 1.0)
    assert out["reenacted"] is None and out["similarity"]["identity"] is None
    state["yaw"] = 30.0
    assert fresh.state["yaw"] == 0.0  # state is a copy


def test_nose_width_widens_and_narrows_the_nose(fresh):
    source = fresh.outputs["source_landmarks"]
    wide = fresh.set(nose_width=0.8)["landmarks"]
    assert nose_width(wide) > 1.15 * nose_width(source)
    assert np.abs(wide[:17] - source[:17]).max() < 0.05  # the jaw does not move
    narrow = fresh.set(nose_width=-0.8)["landmarks"]
    assert nose_width(narrow) < 0.85 * nose_width(source)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_every_attribute_moves_points_and_lowers_the_landmark_identity(fresh, attribute):
    out = fresh.set(**{attribute: 1.0})
    assert np.abs(out["landmarks"] - out["source_landmarks"]).max() > 0.5
    assert -1.0 <= out["similarity"]["landmarks"]["target"] < 1.0


def test_yaw_slider_turns_the_head(fresh):
    right = fresh.set(yaw=20.0)
    turn = right["pose"]["target"][0] - right["pose"]["source"][0]
    np.testing.assert_allclose(head_pose(right["landmarks"], SIZE), right["pose"]["target"])
    assert 10 < turn < 35  # head_pose (PnP on the mean face) reads 20 degree turns of synthetic faces as 12-28
    left = fresh.set(yaw=-20.0)
    assert -35 < left["pose"]["target"][0] - left["pose"]["source"][0] < -10
    # a turn keeps the person: its landmark identity stays above that of a strong attribute change
    turned = fresh.set(yaw=15.0)["similarity"]["landmarks"]["target"]
    longer = fresh.set(yaw=0.0, face_length=1.0)["similarity"]["landmarks"]["target"]
    assert turned > longer


def test_pitch_roll_and_expression(fresh):
    source = fresh.outputs["source_landmarks"]
    rolled = fresh.set(roll=15.0)
    assert 8 < rolled["pose"]["target"][2] - rolled["pose"]["source"][2] < 22
    opened = fresh.set(roll=0.0, expression="jaw_open", expression_strength=1.0)["landmarks"]
    assert opened[57, 1] - source[57, 1] > 3  # the lower lip drops
    half = fresh.set(expression_strength=0.5)["landmarks"]
    assert 0 < half[57, 1] - source[57, 1] < opened[57, 1] - source[57, 1]


def test_li_and_lsg_strips_follow_the_sliders(fresh):
    before = {key: fresh.outputs[key].copy() for key in ("li", "lsg", "li_sketches", "lsg_sketches")}
    out = fresh.set(mouth_width=0.8)
    for key, value in before.items():
        assert out[key].shape == value.shape and not np.array_equal(out[key], value), key
    np.testing.assert_allclose(out["li"][0], out["source_landmarks"], atol=1e-4)
    np.testing.assert_allclose(out["li"][-1], out["landmarks"], atol=1e-4)
    assert out["li_sketches"].shape == (8, SIZE, SIZE, 3) and out["lsg"].shape == (8, 68, 2)
    sims = out["similarity"]["landmarks"]
    for key in ("li", "lsg"):
        assert sims[key].shape == (8,) and ((sims[key] >= -1) & (sims[key] <= 1)).all()
    assert sims["li"][0] == pytest.approx(1.0) and sims["li"][-1] == pytest.approx(sims["target"])
    short = fresh.set(k=4)
    assert short["li"].shape == (4, 68, 2) and short["lsg_sketches"].shape == (4, SIZE, SIZE, 3)
    assert short["figure"].shape[1] == 5 * SIZE  # at least five columns (the top row)


def test_figure_changes_with_a_slider(fresh):
    before = fresh.figure().copy()
    after = fresh.set(brow_height=1.0)["figure"]
    assert before.shape == after.shape and before.dtype == np.uint8
    assert (np.abs(before.astype(int) - after.astype(int)).max(-1) > 30).sum() > 50


def test_bad_values_are_refused_with_names(fresh):
    with pytest.raises(InputError, match="unknown control 'nose_widht'"):
        fresh.set(nose_widht=0.5)
    with pytest.raises(InputError, match=r"yaw=90.0: out of range \[-45.0, 45.0\]"):
        fresh.set(yaw=90.0)
    with pytest.raises(InputError, match="expected a number"):
        fresh.set(eye_size="big")
    with pytest.raises(InputError, match="whole number"):
        fresh.set(k=4.5)
    with pytest.raises(InputError, match="choose one of neutral"):
        fresh.set(expression="grin")
    with pytest.raises(InputError, match="synthetic:N"):
        fresh.set(source="synthetic:three")
    assert fresh.state["yaw"] == 0.0  # nothing was applied
    with pytest.raises(InputError, match="draws at"):
        LandmarkDemo(size=100, lsg=None)
    with pytest.raises(InputError, match="lsg: expected"):
        LandmarkDemo(lsg=3)


def test_widget_sliders_drive_the_demo(lsg):
    demo = LandmarkDemo("synthetic:1", lsg=lsg, reenactor=None, identity=None, size=64, device="cpu")
    box = demo.widget
    assert "reenactbook-demo" in box._dom_classes and demo.image.value[:4] == b"\x89PNG"
    png = demo.image.value
    demo.controls["eye_size"].value = 0.9  # no asyncio loop runs here, so the debounced update runs at once
    assert demo.state["eye_size"] == 0.9 and demo.image.value != png
    assert "landmark identity" in demo.table.value and "landmarks" in demo.status.value
    demo.set(yaw=12.0)  # Python -> sliders
    assert demo.controls["yaw"].value == 12.0
    demo.controls["source"].value = "synthetic:2"
    assert demo.state["source"] == "synthetic:2" and demo.outputs["source"] == "synthetic:2"
    demo._change_source("synthetic:x")  # a source that cannot load: the error is shown, the demo stays as it was
    assert "InputError" in demo.status.value and demo.state["source"] == "synthetic:2"
    assert demo.controls["source"].value == "synthetic:2"


def test_reenacted_views_and_identity_cosine(lsg, reenactor_path):
    demo = LandmarkDemo("synthetic:3", lsg=lsg, reenactor=reenactor_path, identity=pooled_colours, size=SIZE, device="cpu")
    out = demo.set(k=3)
    faces = out["reenacted"]
    assert faces["target"].shape == (SIZE, SIZE, 3) and faces["li"].shape == faces["lsg"].shape == (3, SIZE, SIZE, 3)
    sims = out["similarity"]["identity"]
    assert -1 <= sims["target"] <= 1 and sims["li"].shape == (3,) and ((np.abs(sims["lsg"]) <= 1)).all()
    before = faces["li"].copy()
    after = demo.set(jaw_width=1.0, yaw=15.0)["reenacted"]["li"]
    assert not np.array_equal(before[-1], after[-1])  # the last frame's sketch changed, so did its face
    assert "reenact_ms" in demo.outputs["timings"]
    # through the widget, the reenactment waits for the heavy (settle) timer; without a loop it runs at once
    demo.widget
    demo.controls["nose_width"].value = 0.5
    assert demo.outputs["reenacted"] is not None and demo.state["nose_width"] == 0.5


def test_landmark_identity_measure():
    people = [render_synthetic(i, 64) for i in range(3)]
    _, turned, _ = render_synthetic(0, 64, pose=(10.0, 5.0, 0.0), expression="talk")
    sims = landmark_similarity(np.stack([people[0][1], turned, people[1][1], people[2][1]]), people[0][1])
    assert sims[0] == pytest.approx(1.0) and sims[1] > max(sims[2], sims[3])
    assert identity_similarity(np.zeros(16), np.full(16, 10.0)) == -1.0  # clipped
    fit = fit_face(people[0][1])
    np.testing.assert_allclose(edit_landmarks(people[0][1], fit), people[0][1])


def test_aligned_pair_source_and_errors():
    image, points, _ = render_synthetic(5, 128)
    source = make_source((image, points), 64)
    assert source.image.shape == (64, 64, 3) and np.allclose(source.landmarks, points / 2)
    with pytest.raises(InputError, match="square uint8"):
        make_source((image[:, :100], points))
    with pytest.raises(InputError, match=r"68-point landmarks"):
        make_source((image, points[:60]))
    with pytest.raises(InputError, match="not a readable image"):
        from reenactbook.editing import align_photo
        align_photo(b"not an image")


def test_debouncer_calls_once_after_a_burst():
    import asyncio
    calls = []
    debounced = Debouncer(0.05, lambda: calls.append(1))

    async def burst():
        for _ in range(4):
            debounced()
            await asyncio.sleep(0.01)
        assert debounced.pending and not calls
        await asyncio.sleep(0.12)

    asyncio.run(burst())
    assert calls == [1] and not debounced.pending


def test_sample_clip_and_uploaded_photo(samples_root, shared_weights, lsg):
    from PIL import Image
    demo = LandmarkDemo("sample:lp_d0", lsg=lsg, reenactor=None, identity=None, size=SIZE, device="cpu")
    out = demo.outputs
    assert out["source"] == "sample:lp_d0" and out["source_image"].std() > 10
    points = out["source_landmarks"]
    eyes = points[36:42].mean(0), points[42:48].mean(0)
    assert 0.15 * SIZE < eyes[1][0] - eyes[0][0] < 0.45 * SIZE and abs(eyes[1][1] - eyes[0][1]) < 0.05 * SIZE  # aligned, level
    assert nose_width(demo.set(nose_width=0.8)["landmarks"]) > nose_width(points)
    buffer = io.BytesIO()
    Image.fromarray(demo.source.image).resize((256, 256)).save(buffer, format="PNG")
    demo.widget
    demo._on_upload({"new": ({"name": "face.png", "content": memoryview(buffer.getvalue())},)})  # what FileUpload sends
    assert demo.state["source"] == "upload:face.png" and demo.controls["source"].value == "upload:face.png"
    with pytest.raises(InputError, match="no face found"):
        demo.load_image(np.full((200, 200, 3), 127, np.uint8))


# ---------------------------------------------------------------- the model registry (issue 15)

def test_demo_uses_the_best_available_models_by_default(tmp_path, cache, monkeypatch):
    "reenactor='auto' and lsg='auto' (the defaults) load the best models of the registry; without a reenactor the demo says how to get one."
    from reenactbook.config import load_options
    from reenactbook.checkpoints import save_checkpoint
    from reenactbook.lsg import LandmarkSequenceGenerator
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REENACTBOOK_MODELS", str(tmp_path / "models"))
    torch.manual_seed(0)
    lsg_net = LandmarkSequenceGenerator(68, hidden=8)
    save_checkpoint(tmp_path / "models" / "demo-lsg.safetensors", {"generator": lsg_net.net.state_dict()},
                    {"kind": "lsg", "step": 1, "num_points": 68, "k": 6, "options": load_options("tiny", {"lsg.hidden": 8}).to_dict()})
    bare = LandmarkDemo("synthetic:3", identity=None, size=SIZE, device="cpu")
    assert bare.reenactor is None and "no trained reenactor found" in bare.model_message
    assert bare.outputs["models"] == {"reenactor": None, "lsg": "demo-lsg"} and bare.state["k"] == 6
    model = Reenactor(ReenactorConfig(image_size=64, ngf=4, n_blocks=1), discriminator=False)
    model.save(tmp_path / "models" / "demo-reenactor.safetensors", {"step": 1, "options": load_options("tiny").to_dict()})
    demo = LandmarkDemo("synthetic:3", identity=None, size=SIZE, device="cpu")
    assert demo.outputs["models"] == {"reenactor": "demo-reenactor", "lsg": "demo-lsg"}
    out = demo.set(yaw=10.0)
    assert out["reenacted"]["target"].shape == (SIZE, SIZE, 3) and len(out["reenacted"]["lsg"]) == 6
