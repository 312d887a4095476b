"""generators.images.save_video: GIF (Pillow) always, MP4 (imageio-ffmpeg) when installed; gankit edit --video."""
import numpy as np
import pytest
from PIL import Image, ImageSequence

from generators import images


def _frames(n=5, h=20, w=30):
    """Distinct frames (Pillow merges identical neighbours in a GIF): a bar that moves right."""
    out = []
    for t in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, 4 * t:4 * t + 4] = (255, 32 * t, 0)
        out.append(f)
    return out


def test_gif_round_trip(tmp_path):
    frames = _frames()
    images.save_video(frames, tmp_path / "a.gif", fps=10)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.format == "GIF" and im.n_frames == len(frames) and im.size == (30, 20)
        assert im.info["duration"] == 100 and im.info["loop"] == 0
        back = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    for a, b in zip(back, frames):          # few colours: the palette holds them exactly
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_video_inputs(tmp_path):
    with pytest.raises(images.VideoWriterError, match="unknown video suffix"):
        images.save_video(_frames(), tmp_path / "a.avi")
    with pytest.raises(ValueError, match="one size"):
        images.save_video([_frames()[0], _frames(h=10)[0]], tmp_path / "b.gif")
    assert not list(tmp_path.iterdir())


def test_mp4_round_trip(tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    frames = _frames(n=6, h=21, w=30)          # odd height: padded by one row for 4:2:0
    images.save_video(frames, tmp_path / "a.mp4", fps=12)
    reader = ffmpeg.read_frames(str(tmp_path / "a.mp4"))
    meta = next(reader)
    got = [np.frombuffer(b, np.uint8).reshape(22, 30, 3) for b in reader]
    assert tuple(meta["size"]) == (30, 22) and abs(meta["fps"] - 12) < 1e-6
    assert len(got) == len(frames)
    for a, b in zip(got, frames):              # lossy, but the moving bar stays where it was
        assert np.abs(a[:21].astype(int) - b).mean() < 12
    assert not list(tmp_path.glob("*.tmp"))


def test_mp4_missing_is_one_line(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_ffmpeg(name, *a, **k):
        if name == "imageio_ffmpeg":
            raise ImportError("no imageio_ffmpeg")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ffmpeg)
    with pytest.raises(images.VideoWriterError) as e:
        images.save_video(_frames(), tmp_path / "a.mp4")
    assert "pip install imageio-ffmpeg" in str(e.value) and "\n" not in str(e.value)
    assert not images.mp4_available()


def test_edit_video_option(tmp_path, monkeypatch):
    import torch
    from click.testing import CliRunner

    import generators
    from cli.main import main
    from editing import directions as D

    torch.manual_seed(0)
    G = generators.Generator(z_dim=4, w_dim=4, img_resolution=8, mapping_kwargs=dict(num_layers=1),
                             synthesis_kwargs=dict(channel_base=32, channel_max=4))
    generators.save(G, tmp_path / "g.safetensors")
    D.save(tmp_path / "d.npz", D.Directions(vectors=np.eye(4, dtype=np.float32)[:1], names=["x"], space="w",
                                            method="manual"))
    args = ["edit", "-g", str(tmp_path / "g.safetensors"), "-d", str(tmp_path / "d.npz"), "--seeds", "0-1",
            "--strength", "-2:2:3"]
    r = CliRunner()
    res = r.invoke(main, args + ["--video", "none", "-o", str(tmp_path / "n")])
    assert res.exit_code == 0, res.output
    assert not list((tmp_path / "n").glob("sweep.*")) and (tmp_path / "n" / "grid.png").exists()
    res = r.invoke(main, args + ["--fps", "5", "-o", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    with Image.open(tmp_path / "g" / "sweep.gif") as im:
        assert im.info["duration"] == 200
    monkeypatch.setattr(images, "mp4_available", lambda: False)
    res = r.invoke(main, args + ["--video", "mp4", "-o", str(tmp_path / "m")])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "pip install imageio-ffmpeg" in res.output
