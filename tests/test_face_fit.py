"""face_fit: the face model fitted to 2D landmarks, and the 3D-aware interpolation baseline."""
import numpy as np
import pytest
import torch

from reenactbook.core import InputError
from reenactbook.face_fit import (fit_faces, interpolate_3d, layout_98_weights, model_points, model_shapes, model_sizes,
                                  project, random_faces, slerp_rotation)
from reenactbook.landmarks import MEAN_FACE_3D, MEAN_FACE_3D_98, WFLW98_TO_68, nme
from reenactbook.lsg import linear_interpolation
from reenactbook.face_model import camera_rotation, face_model


def turned_face(identity, yaw, expression=None, size=64.0):
    "Model landmarks [68, 2] of one identity at `yaw` degrees (weak perspective, `size` px per model unit)."
    m, e = model_sizes()
    shapes = model_shapes(torch.as_tensor(identity, dtype=torch.float32)[None],
                          torch.zeros(1, e) if expression is None else torch.as_tensor(expression, dtype=torch.float32)[None])
    rotation = torch.as_tensor(camera_rotation([[yaw, 0.0, 0.0]]), dtype=torch.float32)
    return project(shapes, rotation, torch.tensor([size]), torch.tensor([[2 * size, 2 * size]]))[0]


def test_model_sizes_are_read_from_the_face_model():
    model = face_model()
    assert model_sizes() == (len(model.identity_basis), len(model.expression_basis))
    fit = fit_faces(random_faces(3)[0])
    assert fit.identity.shape == (3, len(model.identity_basis)) and fit.expression.shape == (3, len(model.expression_basis))


def test_fit_recovers_identity_and_pose_of_model_faces():
    points, truth = random_faces(300, seed=5, noise=0.0)
    fit = fit_faces(points)
    identity_error = np.linalg.norm(fit.identity.numpy() - truth["identity"], axis=-1).mean()
    other_person = np.linalg.norm(fit.identity.numpy() - np.roll(truth["identity"], 1, 0), axis=-1).mean()
    assert identity_error < 0.25 * other_person
    assert np.abs(fit.head_pose() - truth["pose"]).mean() < 1.0                          # degrees
    assert fit.residual.norm(dim=-1).mean() < 1.0                                          # px, at 64 px per model unit
    assert torch.allclose(fit.projection() + fit.residual, points, atol=1e-3)


def test_fit_takes_any_batch_shape_98_points_numpy_and_low_precision():
    points = random_faces(6, seed=2)[0]
    batched = fit_faces(points.reshape(2, 3, 68, 2).numpy())
    assert batched.identity.shape[:2] == (2, 3) and batched.rotation.shape == (2, 3, 3, 3)
    assert torch.allclose(batched.identity.reshape(6, -1), fit_faces(points).identity, atol=1e-4)
    for dtype in (torch.bfloat16, torch.float16):                                          # fp32 inside, outside any autocast
        low = fit_faces(points.to(dtype))
        assert low.identity.dtype == torch.float32 and torch.isfinite(low.identity).all()
    p98 = model_points(points, 98)
    fit98 = fit_faces(p98)
    assert fit98.residual.shape == (6, 98, 2)
    assert torch.allclose(fit98.identity, fit_faces(p98[:, WFLW98_TO_68]).identity, atol=1e-5)
    fit68 = fit_faces(p98[:, WFLW98_TO_68])                                              # the 98 points are the model's own combination:
    assert torch.allclose(fit98.residual, model_points(fit68.residual, 98), atol=1e-3)    # their residual is the same combination


def test_fit_refuses_bad_input():
    with pytest.raises(InputError, match="68, 2"):
        fit_faces(np.zeros((5, 70, 2)))
    bad = random_faces(2)[0].clone(); bad[0, 3, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fit_faces(bad)
    with pytest.raises(InputError, match="share_identity"):
        fit_faces(random_faces(1)[0][0], share_identity=True)


def test_layout_98_weights_rebuild_the_98_point_mean_face():
    weights = layout_98_weights()
    assert np.allclose(weights.sum(1), 1)
    made = weights @ MEAN_FACE_3D.astype(np.float64)
    assert np.allclose(made[WFLW98_TO_68], MEAN_FACE_3D)
    assert np.abs(made - MEAN_FACE_3D_98).max() <= 6.0 + 1e-4                              # only the lower brow (6 mm) and pupil depth differ


def test_slerp_rotation_moves_at_constant_angular_speed():
    start = torch.as_tensor(camera_rotation([[-30.0, 5.0, 0.0]]), dtype=torch.float32)
    end = torch.as_tensor(camera_rotation([[40.0, -5.0, 10.0]]), dtype=torch.float32)
    path = slerp_rotation(start, end, torch.linspace(0, 1, 5))[0]
    assert torch.allclose(path[0], start[0], atol=1e-5) and torch.allclose(path[-1], end[0], atol=1e-5)
    steps = [float(torch.arccos(((path[i].T @ path[i + 1]).trace() - 1).clamp(-2, 2) / 2)) for i in range(4)]
    assert np.allclose(steps, steps[0], atol=1e-3)
    assert torch.allclose(path @ path.transpose(-1, -2), torch.eye(3).expand(5, 3, 3), atol=1e-5)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_interpolate_3d_reproduces_the_endpoints_exactly(kind):
    points = random_faces(8, seed=4, noise=2.0)[0]                                        # noisy: the residual carries the noise
    start, end = points[:4], points[4:]
    if kind == "numpy":
        start, end = start.numpy(), end.numpy()
    out = interpolate_3d(start, end, 8)
    assert type(out) is type(start) and tuple(out.shape) == (4, 8, 68, 2)
    assert np.abs(np.asarray(out[:, 0]) - np.asarray(start)).max() < 0.01
    assert np.abs(np.asarray(out[:, -1]) - np.asarray(end)).max() < 0.01
    single = interpolate_3d(start[0], end[0], 5)
    assert tuple(single.shape) == (5, 68, 2)
    same = interpolate_3d(start[0], start[0], 4)                                          # no motion: the face stays put
    assert np.abs(np.asarray(same) - np.asarray(start[0])[None]).max() < 0.01


def test_interpolate_3d_on_98_points_and_bad_input():
    points = model_points(random_faces(2, seed=6)[0], 98)
    out = interpolate_3d(points[0], points[1], 6)
    assert out.shape == (6, 98, 2) and torch.allclose(out[0], points[0]) and torch.allclose(out[-1], points[1])
    with pytest.raises(InputError, match="k must be an integer"):
        interpolate_3d(points[0], points[1], 1)
    with pytest.raises(InputError, match="same layout"):
        interpolate_3d(points[0], points[1, WFLW98_TO_68], 4)


def test_interpolate_3d_beats_li_across_a_head_turn():
    rng = np.random.default_rng(0)
    identity = rng.standard_normal(model_sizes()[0])
    yaws = np.linspace(-40, 40, 7)
    truth = torch.stack([turned_face(identity, yaw) for yaw in yaws])
    geometric = interpolate_3d(truth[0], truth[-1], 7)
    linear = linear_interpolation(truth[0], truth[-1], 7)
    error = lambda seq: float(np.asarray(nme(np.asarray(seq[1:-1], np.float64), truth[1:-1].numpy().astype(np.float64))).mean())
    assert error(geometric) < 0.2 * error(linear)
    width = lambda p: float(p[16, 0] - p[0, 0])
    assert width(geometric[3]) > 1.1 * width(linear[3])                                   # LI squeezes the face halfway


def test_interpolate_3d_without_residual_drops_what_the_model_cannot_express():
    clean = random_faces(20, seed=8)[0].repeat(2, 1, 1)                                # start and end: one person, two noise draws
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 2.0
    model_only = interpolate_3d(noisy[:20], noisy[20:], 5, residual="none")
    kept = interpolate_3d(noisy[:20], noisy[20:], 5)
    error = lambda seq: float((seq[:, 0] - clean[:20]).norm(dim=-1).mean())
    assert error(kept) == pytest.approx(float((noisy[:20] - clean[:20]).norm(dim=-1).mean()), rel=1e-4)   # exactly the noisy input
    assert error(model_only) < 0.7 * error(kept)                                          # the model's projection removes much of the noise


def noisy_windows(count=32, noise=2.0, seed=5):
    "Model-made motions `[B, 8, 68, 2]` (no residual) and their endpoints with `noise` px of Gaussian noise."
    faces = torch.as_tensor(random_faces(2 * count, seed=seed, max_yaw=30)[0], dtype=torch.float32).reshape(count, 2, 68, 2)
    clean = interpolate_3d(faces[:, 0], faces[:, 1], 8, residual="none")
    noisy = clean[:, [0, -1]] + noise * torch.randn(count, 2, 68, 2, generator=torch.Generator().manual_seed(seed))
    return clean, noisy


def test_denoised_residual_keeps_endpoints_and_carries_less_noise_than_li_weights():
    clean, noisy = noisy_windows()
    denoised = interpolate_3d(noisy[:, 0], noisy[:, 1], 8)
    linear = interpolate_3d(noisy[:, 0], noisy[:, 1], 8, residual="linear")
    assert torch.equal(denoised[:, 0], noisy[:, 0]) and torch.equal(denoised[:, -1], noisy[:, 1])
    error = lambda seq: float((seq[:, 1:-1] - clean[:, 1:-1]).norm(dim=-1).mean())
    assert error(denoised) < 0.9 * error(linear)
    assert error(linear) < 1.05 * error(linear_interpolation(noisy[:, 0], noisy[:, 1], 8))


def test_denoised_residual_keeps_li_weights_for_smooth_detail_and_not_for_noise():
    from reenactbook.face_fit import residual_weights
    angle = torch.arange(68, dtype=torch.float32)
    detail = torch.stack([torch.sin(angle / 4.0), torch.cos(angle / 5.0)], -1) * 3.0       # smooth along the contours, px
    drift = torch.stack([torch.sin(angle / 6.0), torch.zeros(68)], -1)                    # a smooth misfit that changes
    smooth = torch.stack([detail, detail + drift])[None]                                  # [1, 2, 68, 2]: one face, no noise
    weights = residual_weights(smooth, 8)
    li = torch.stack([1 - torch.linspace(0, 1, 8), torch.linspace(0, 1, 8)], -1)
    torch.testing.assert_close(weights[0], li, atol=0.03, rtol=0)
    noise = torch.randn(1, 2, 68, 2, generator=torch.Generator().manual_seed(0)) * 2.0
    noisy = residual_weights(noise, 8)[0]
    assert noisy[0, 0] == 1 and noisy[-1, 1] == 1 and noisy[0, 1] == 0 and noisy[-1, 0] == 0   # endpoints keep their own
    assert float(noisy[3:5].sum(-1).max()) < 0.3                                          # pure noise hardly reaches the middle


def test_carried_residuals_turn_with_the_head_and_return_each_endpoint_exactly():
    from reenactbook.face_fit import carried_residuals
    clean, noisy = noisy_windows(count=4)
    fit = fit_faces(noisy, share_identity=True)
    w = torch.linspace(0, 1, 5)
    rotation = slerp_rotation(fit.rotation[:, 0], fit.rotation[:, 1], w)
    scale = torch.exp((1 - w) * fit.scale[:, :1].log() + w * fit.scale[:, 1:].log())
    carried, lifted = carried_residuals(fit, rotation, scale)
    assert carried.shape == (4, 5, 2, 68, 2) and lifted.shape == (4, 2, 68, 3)
    torch.testing.assert_close(carried[:, 0, 0], fit.residual[:, 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(carried[:, -1, 1], fit.residual[:, 1], atol=1e-4, rtol=0)


def test_carried_residuals_see_a_3d_detail_from_the_side_across_a_turn():
    from reenactbook.face_fit import FaceFit, carried_residuals, triangulated_offsets
    detail = torch.randn(1, 68, 3, generator=torch.Generator().manual_seed(3)) * 0.05       # what the model lacks, model units
    yaw = torch.tensor([-35.0, -17.5, 0.0, 17.5, 35.0])
    rotation = torch.as_tensor(camera_rotation(np.stack([yaw.numpy(), 0 * yaw.numpy(), 0 * yaw.numpy()], -1)), dtype=torch.float32)[None]
    scale = torch.full((1, 5), 80.0)
    seen = lambda j: scale[0, j] * detail[0] @ rotation[0, j, :2].T                        # the detail in frame j's image, px
    ends = [0, 4]
    fit = FaceFit(torch.zeros(1, 2, 16), torch.zeros(1, 2, 8), rotation[:, ends], scale[:, ends], torch.zeros(1, 2, 2),
                  torch.stack([seen(0), seen(4)])[None])
    torch.testing.assert_close(triangulated_offsets(fit, ridge=1e-6), detail, atol=1e-3, rtol=0)
    carried, _ = carried_residuals(fit, rotation, scale)
    flat_lift = lambda j: (1 - j / 4) * seen(0) @ rotation[0, 0, :2] @ rotation[0, j, :2].T + j / 4 * seen(4) @ rotation[0, 4, :2] @ rotation[0, j, :2].T
    for j in (1, 3):
        li_weights = (1 - j / 4) * carried[0, j, 0] + j / 4 * carried[0, j, 1]
        error = (li_weights - seen(j)).norm(dim=-1).mean()
        flat_error = (flat_lift(j) - seen(j)).norm(dim=-1).mean()                          # lifted at depth 0, as before
        assert error < 0.25 * flat_error, (j, float(error), float(flat_error))


def test_interpolate_3d_refuses_an_unknown_residual_mode_and_takes_98_points():
    points = torch.as_tensor(random_faces(2, seed=2)[0], dtype=torch.float32)
    with pytest.raises(InputError, match="residual must be one of"):
        interpolate_3d(points[0], points[1], 4, residual="smooth")
    faces98 = torch.as_tensor(MEAN_FACE_3D_98[:, :2], dtype=torch.float32) * 60 + 128
    out = interpolate_3d(faces98, faces98 + 3.0, 5)
    assert out.shape == (5, 98, 2) and torch.equal(out[0], faces98) and torch.equal(out[-1], faces98 + 3.0)


def test_interpolate_3d_refuses_what_is_not_a_face_and_mixed_handedness():
    faces = torch.as_tensor(random_faces(2, seed=4, max_yaw=20)[0], dtype=torch.float32)
    start, end = faces[0], faces[1]
    scattered = torch.rand(68, 2, generator=torch.Generator().manual_seed(0)) * 200
    with pytest.raises(InputError, match="p_end does not look like a face.*iBUG"):
        interpolate_3d(start, scattered, 8)
    with pytest.raises(InputError, match="p_start does not look like a face"):
        interpolate_3d(start[torch.randperm(68, generator=torch.Generator().manual_seed(1))], end, 8)   # shuffled point order
    mirrored = end * torch.tensor([-1.0, 1.0]) + torch.tensor([400.0, 0.0])                   # flipped, labels not swapped
    with pytest.raises(InputError, match="mirror images.*layout.mirror"):
        interpolate_3d(start, mirrored, 8)
    both = interpolate_3d(start * torch.tensor([-1.0, 1.0]), mirrored, 8)                    # one consistent handedness: fine
    assert torch.isfinite(both).all() and torch.equal(both[-1], mirrored)
    upside_down = 400.0 - end                                                                  # turned 180 degrees: a rotation, not a mirror
    batch_end = torch.stack([end, scattered, end, scattered])
    with pytest.raises(InputError, match=r"p_end does not look like a face \(batch rows 1, 3\)"):
        interpolate_3d(start.expand(4, -1, -1), batch_end, 8)
    assert torch.equal(interpolate_3d(start, upside_down, 8)[-1], upside_down)


def test_fit_faces_takes_one_set_and_an_empty_batch():
    face = torch.as_tensor(random_faces(1, seed=6)[0][0], dtype=torch.float32)
    one = fit_faces(face)
    assert one.identity.shape == (model_sizes()[0],) and one.rotation.shape == (3, 3) and one.residual.shape == (68, 2)
    empty = interpolate_3d(torch.zeros(0, 68, 2), torch.zeros(0, 68, 2), 8)
    assert empty.shape == (0, 8, 68, 2)
    assert fit_faces(torch.zeros(0, 2, 68, 2), share_identity=True).identity.shape == (0, 2, model_sizes()[0])
    with pytest.raises(InputError, match="all points are equal in 1 set"):
        fit_faces(torch.stack([face, torch.zeros(68, 2)]))


def test_annotated_real_faces_fit_well_inside_the_face_check(samples_root):
    "Every 68- and 98-point annotation of the shared landmarked photos is read as a face facing the camera."
    from reenactbook.face_fit import NOT_A_FACE
    from reenactbook.landmarks import read_coco_keypoints, read_pts
    sets = [read_pts(p) for p in sorted((samples_root / "landmarked").glob("*/*.pts"))]
    for path in sorted((samples_root / "landmarked" / "mmpose").glob("*/*.json")):
        sets += [v[:, :2] for record in read_coco_keypoints(path) for v in record.values()
                 if isinstance(v, np.ndarray) and v.ndim == 2 and v.shape[0] in (68, 98)]
    assert len(sets) >= 10 and {len(s) for s in sets} == {68, 98}
    for points in sets:
        fit = fit_faces(np.asarray(points, np.float32))
        misfit = float(fit.residual.pow(2).sum(-1).mean(-1).sqrt() / fit.scale)
        assert misfit < NOT_A_FACE / 4 and float(fit.rotation[2, 2]) > 0.5, (len(points), misfit)
