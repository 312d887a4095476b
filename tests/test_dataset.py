"""Training datasets: image folders (recursive, mixed formats and modes, crops, resize, unreadable
files), CSV labels, NVIDIA's dataset_tool zip written by ``pack`` and read back by ``open_dataset``.

References are independent of ``generators.dataset``: pixel values written into the test images,
Pillow's own conversions of the same files, and the zip's raw members.
"""
from __future__ import annotations

import io
import json
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from generators.dataset import DatasetError, ImageDataset, open_dataset, pack


def _rgb(arr):
    """uint8 [H, W, 3] -> [3, H, W]."""
    return np.asarray(arr, dtype=np.uint8).transpose(2, 0, 1)


@pytest.fixture()
def mixed_folder(tmp_path):
    """A nested folder: RGBA PNG, grayscale PNG, palette GIF, non-square JPEG, non-square PNG, garbage .jpg,
    a text file. Returns (root, {relative name: expected uint8 [3, 16, 16] or None when only checked loosely})."""
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)
    expected = {}

    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "a_rgba.png")
    expected["a_rgba.png"] = _rgb(rgba[..., :3])                       # alpha dropped, colour kept

    gray = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(gray, "L").save(root / "sub" / "b_gray.png")
    expected["sub/b_gray.png"] = np.repeat(gray[None], 3, 0)           # R = G = B = grey level

    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 10]], dtype=np.uint8)
    idx = rng.integers(0, 4, (16, 16), dtype=np.uint8)
    gif = Image.fromarray(idx, "P")
    gif.putpalette(palette.flatten().tolist() + [0] * (768 - palette.size))
    gif.save(root / "sub" / "deeper" / "c_pal.gif")
    expected["sub/deeper/c_pal.gif"] = _rgb(palette[idx])               # palette lookup

    # Non-square PNG 24 x 16 (w x h): the centre 16 x 16 is a gradient, the 4-px side bands are red.
    wide = np.zeros((16, 24, 3), dtype=np.uint8)
    wide[..., 0] = 255
    center = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    wide[:, 4:20] = center
    Image.fromarray(wide).save(root / "d_wide.png")
    expected["d_wide.png"] = _rgb(center)                              # centre crop, no resize needed

    # Non-square JPEG 16 x 40 (w x h): blue centre, green top/bottom bands of 12 px.
    tall = np.zeros((40, 16, 3), dtype=np.uint8)
    tall[..., 1] = 255
    tall[12:28] = (0, 0, 255)
    Image.fromarray(tall).save(root / "sub" / "e_tall.jpg", quality=95)
    expected["sub/e_tall.jpg"] = None

    (root / "sub" / "garbage.jpg").write_bytes(b"this is not a JPEG \x00\xff" * 20)
    (root / "notes.txt").write_text("not an image")
    return root, expected


# ------------------------------------------------------------------------------------------- folders

def test_folder_recursive_mixed_modes_and_skips_garbage(mixed_folder):
    root, expected = mixed_folder
    with pytest.warns(UserWarning, match="garbage.jpg"):
        ds = open_dataset(root, resolution=16, progress=False)
    assert ds.names == sorted(expected)                                # recursive, sorted, garbage/txt left out
    assert ds.images.shape == (len(expected), 3, 16, 16) and ds.images.dtype.is_floating_point is False
    for name, img in zip(ds.names, ds.images.numpy()):
        if expected[name] is not None:
            np.testing.assert_array_equal(img, expected[name], err_msg=name)
    tall = ds.images.numpy()[ds.names.index("sub/e_tall.jpg")].astype(int)
    # Centre crop of the tall JPEG keeps only the blue band (JPEG error allowed; chroma subsampling
    # blurs the band's first and last rows, so look inside them): the green bands are gone.
    inner = tall[:, 2:-2]
    assert inner[2].min() > 200 and inner[1].max() < 60 and inner[0].max() < 60
    assert ds.c_dim == 0 and len(ds) == ds.num_raw == len(expected)


def test_folder_resize_and_native_size(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    # Constant colours stay exactly constant under Lanczos (weights sum to 1), at any scale.
    Image.new("RGB", (64, 64), (10, 120, 250)).save(root / "big.png")
    Image.new("RGB", (8, 8), (200, 30, 90)).save(root / "small.png")
    ds = open_dataset(root, resolution=16, progress=False)
    assert ds.resolution == 16
    np.testing.assert_array_equal(ds.images[0].numpy(), np.broadcast_to(np.array([10, 120, 250])[:, None, None],
                                                                        (3, 16, 16)))
    np.testing.assert_array_equal(ds.images[1].numpy(), np.broadcast_to(np.array([200, 30, 90])[:, None, None],
                                                                        (3, 16, 16)))
    # A patterned image: same as Pillow's Lanczos resize of the file.
    pat = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pat).save(root / "pat.png")
    ds = open_dataset(root, resolution=16, progress=False)
    ref = np.asarray(Image.fromarray(pat).resize((16, 16), Image.LANCZOS)).transpose(2, 0, 1)
    np.testing.assert_array_equal(ds.images[ds.names.index("pat.png")].numpy(), ref)
    # Native size: mixed sizes need a resolution.
    with pytest.raises(DatasetError, match="differ in size"):
        open_dataset(root, progress=False)
    assert open_dataset(root, resolution=16, max_images=2, progress=False).num_raw == 2


def test_xflip_doubles():
    imgs = np.random.default_rng(2).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    ds = ImageDataset(imgs, xflip=True)
    assert len(ds) == 6
    np.testing.assert_array_equal(ds[4][0].numpy(), imgs[1][..., ::-1])
    img, _ = ds.batch(torch.tensor([0, 5]))
    np.testing.assert_array_equal(img[1].numpy(), imgs[2][..., ::-1])
    np.testing.assert_array_equal(img[0].numpy(), imgs[0])


def test_only_unreadable_files_is_an_error(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.jpg").write_bytes(b"garbage")
    (root / "y.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(DatasetError, match="no readable images"):
            open_dataset(root, resolution=8, progress=False)
    assert sum("skipping unreadable image" in str(x.message) for x in w) == 2


# ------------------------------------------------------------------------------------------- labels

def _labelled_folder(tmp_path):
    root = tmp_path / "lab"
    (root / "s").mkdir(parents=True)
    cols = {"p.png": (255, 0, 0), "s/q.png": (0, 255, 0), "r.png": (0, 0, 255), "s/t.png": (9, 9, 9)}
    for name, col in cols.items():
        Image.new("RGB", (8, 8), col).save(root / name)
    csv = tmp_path / "labels.csv"
    # Matched by bare file name ("q.png") or by relative path ("r.png"); t.png has no row.
    csv.write_text("file,age,smile\nr.png,30.5,1\nq.png,-2.25,0\np.png,7,1\nunused.png,1,1\n")
    return root, csv, cols


def test_csv_labels_matched_by_name(tmp_path):
    root, csv, cols = _labelled_folder(tmp_path)
    with pytest.warns(UserWarning, match="1 images have no row"):
        ds = open_dataset(root, resolution=8, labels=csv, progress=False)
    assert ds.names == ["p.png", "r.png", "s/q.png"] and ds.label_names == ["age", "smile"]
    want = {"p.png": [7, 1], "r.png": [30.5, 1], "s/q.png": [-2.25, 0]}
    for i, n in enumerate(ds.names):
        np.testing.assert_array_equal(ds.labels[i].numpy(), np.float32(want[n]))
        assert tuple(ds.images[i, :, 0, 0].tolist()) == cols[n]             # label stays with its image
    assert ds.c_dim == 2
    with pytest.warns(UserWarning, match="no row"):
        one = open_dataset(root, resolution=8, labels=csv, label_columns=["smile"], progress=False)
    assert one.c_dim == 1 and one.labels[:, 0].tolist() == [1, 1, 0]
    with pytest.raises(DatasetError, match="no column"):
        open_dataset(root, resolution=8, labels=csv, label_columns=["height"], progress=False)
    (tmp_path / "nofile.csv").write_text("name,age\np.png,1\n")
    with pytest.raises(DatasetError, match="'file' column"):
        open_dataset(root, resolution=8, labels=tmp_path / "nofile.csv", progress=False)
    (tmp_path / "text.csv").write_text("file,age\np.png,old\n")
    with pytest.raises(DatasetError, match="non-numeric"):
        open_dataset(root, resolution=8, labels=tmp_path / "text.csv", progress=False)
    (tmp_path / "none.csv").write_text("file,age\nzzz.png,1\n")
    with pytest.raises(DatasetError, match="no row matches"):
        open_dataset(root, resolution=8, labels=tmp_path / "none.csv", progress=False)


# ------------------------------------------------------------------------------------------- pack / zip

def test_pack_roundtrip_nvidia_layout(tmp_path, mixed_folder):
    root, _ = mixed_folder
    with pytest.warns(UserWarning, match="garbage.jpg"):
        src = open_dataset(root, resolution=16, progress=False)
    names = [n.split("/")[-1] for n in src.names]
    csv = tmp_path / "l.csv"
    rng = np.random.default_rng(5)
    lab = rng.normal(size=(len(names), 3)).astype(np.float32)
    csv.write_text("file,a,b,c\n" + "".join(f"{n},{','.join(repr(float(x)) for x in row)}\n"
                                           for n, row in zip(names, lab)))
    dst = tmp_path / "out" / "ds.zip"
    dst.parent.mkdir()
    with pytest.warns(UserWarning, match="garbage.jpg"):
        n = pack(root, dst, resolution=16, labels=csv, progress=False)
    assert n == len(names)
    with zipfile.ZipFile(dst) as zf:
        members = zf.namelist()
        assert sorted(m for m in members if m.endswith(".png")) == [f"00000/img{i:08d}.png" for i in range(n)]
        meta = json.loads(zf.read("dataset.json"))
        first = np.asarray(Image.open(io.BytesIO(zf.read("00000/img00000000.png"))))
    assert first.shape == (16, 16, 3)
    np.testing.assert_array_equal(first.transpose(2, 0, 1), src.images[0].numpy())
    assert [e[0] for e in meta["labels"]] == [f"00000/img{i:08d}.png" for i in range(n)]
    np.testing.assert_array_equal(np.asarray([e[1] for e in meta["labels"]], dtype=np.float32), lab)

    back = open_dataset(dst, use_labels=True, progress=False)                  # native size: 16
    np.testing.assert_array_equal(back.images.numpy(), src.images.numpy())   # pixel-exact
    np.testing.assert_array_equal(back.labels.numpy(), lab)                  # labels preserved, in order
    assert open_dataset(dst, progress=False).labels is None                   # labels only on request
    # Re-packing the zip keeps its labels.
    dst2 = tmp_path / "again.zip"
    pack(dst, dst2, resolution=16, progress=False)
    again = open_dataset(dst2, use_labels=True, progress=False)
    np.testing.assert_array_equal(again.images.numpy(), src.images.numpy())
    np.testing.assert_array_equal(again.labels.numpy(), lab)


def test_pack_integer_csv_column_keeps_values(tmp_path):
    root, csv, _ = _labelled_folder(tmp_path)
    csv.write_text("file,cls\np.png,3\nq.png,0\nr.png,1\nt.png,2\n")
    direct = open_dataset(root, resolution=8, labels=csv, progress=False)
    pack(root, tmp_path / "c.zip", resolution=8, labels=csv, progress=False)
    back = open_dataset(tmp_path / "c.zip", use_labels=True, progress=False)
    # Conditioning must not depend on whether the data were packed first.
    np.testing.assert_array_equal(back.labels.numpy(), direct.labels.numpy())


def _nvidia_zip(path, labels):
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(len(labels)):
            buf = io.BytesIO()
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(buf, format="png")
            zf.writestr(f"00000/img{i:08d}.png", buf.getvalue())
        zf.writestr("dataset.json", json.dumps({"labels": [[f"00000/img{i:08d}.png", lab]
                                                           for i, lab in enumerate(labels)]}))


def test_class_int_labels_become_one_hot(tmp_path):
    z = tmp_path / "cls.zip"
    _nvidia_zip(z, [2, 0, 1, 2])
    ds = open_dataset(z, use_labels=True, progress=False)
    np.testing.assert_array_equal(ds.labels.numpy(), np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    assert [int(v) for v in ds.images[:, 0, 0, 0]] == [0, 40, 80, 120]       # member order kept
    # Same for an extracted folder with its dataset.json.
    folder = tmp_path / "cls"
    with zipfile.ZipFile(z) as zf:
        zf.extractall(folder)
    np.testing.assert_array_equal(open_dataset(folder, use_labels=True, progress=False).labels.numpy(),
                                  ds.labels.numpy())


def test_bad_paths_and_bad_json_raise_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset(tmp_path / "missing", progress=False)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a folder of images or a dataset zip"):
        open_dataset(tmp_path / "x.txt", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no readable images"):
        open_dataset(tmp_path / "empty", progress=False)
    with pytest.raises(DatasetError):
        pack(tmp_path / "missing", tmp_path / "o.zip", resolution=8, progress=False)
    assert not (tmp_path / "o.zip").exists()
    bad = tmp_path / "bad.zip"
    _nvidia_zip(bad, [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                                        # duplicate member name
        with zipfile.ZipFile(bad, "a") as zf:
            zf.writestr("dataset.json", "{not json")
        with pytest.raises(DatasetError, match="dataset.json"):
            open_dataset(bad, use_labels=True, progress=False)
    ragged = tmp_path / "ragged.zip"
    _nvidia_zip(ragged, [[0.5, 1.0], [2.0]])
    with pytest.raises(DatasetError, match="labels"):
        open_dataset(ragged, use_labels=True, progress=False)
    partial = tmp_path / "partial.zip"
    _nvidia_zip(partial, [1, None])
    with pytest.raises(DatasetError, match="missing"):
        open_dataset(partial, use_labels=True, progress=False)
    with pytest.raises(DatasetError):
        ImageDataset(np.zeros((0, 3, 8, 8), dtype=np.uint8))
