"""Published encoder checkpoints (pSp, e4e, ReStyle, HyperStyle) by name.

The authors publish them only as Google Drive links, which are not direct downloads (Drive answers
large files with a confirmation page). gankit therefore never fetches them: ``resolve(name)`` returns
the file when it is in the cache (``<GANKIT_HOME>/encoders/<filename>``) and otherwise fails with one
line naming the URL and the two ways around it (pass the downloaded file's path, or put it there).

Sources of the links: pSp README "Pretrained Models" (eladrich/pixel2style2pixel); e4e's inference
notebook ``MODEL_PATHS`` (omertov/encoder4editing); HyperStyle README tables (yuval-alaluf/hyperstyle;
IDs as copied into public mirrors of that table). No sha256 is published for any of them.

gankit's own encoders for its bundled face model ship inside the package (``encoders/models/``,
safetensors + JSON config, see MODEL_CARD.md there) and resolve without any cache.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Dict, List

from generators.registry import RegistryError, cache_dir

_DRIVE = "https://drive.google.com/file/d/{}/view"


def _e(file_id: str, filename: str, method: str, domain: str, desc: str, **extra) -> dict:
    return dict(url=_DRIVE.format(file_id), filename=filename, method=method, domain=domain, description=desc,
                direct_download=False, sha256=None, **extra)


BUNDLED_DIR = Path(__file__).resolve().parent / "models"


def _bundled(filename: str, method: str, desc: str) -> dict:
    return dict(url=None, filename=filename, method=method, domain="faces", description=desc, direct_download=False,
                sha256=None, bundled=True, generator="gankit-faces")


MODELS: Dict[str, dict] = {
    "gankit-faces-e4e": _bundled("gankit-faces-e4e.safetensors", "e4e",
                                 "gankit's e4e for its bundled gankit-faces generator (64x64 UTKFace; bundled)"),
    "gankit-faces-hyperstyle": _bundled("gankit-faces-hyperstyle.safetensors", "hyperstyle",
                                        "gankit's hypernetwork on top of gankit-faces-e4e (bundled)"),
    "psp-ffhq-encode": _e("1bMTNWkh5LArlaWSc_wa8VKyq2V42T2z0", "psp_ffhq_encode.pt", "psp", "ffhq",
                          "pSp GradualStyleEncoder, FFHQ 1024 StyleGAN2 inversion"),
    "psp-ffhq-frontalization": _e("1_S4THAzXb-97DbpXmanjHtXRyKxqjARv", "psp_ffhq_frontalization.pt", "psp", "ffhq",
                                  "pSp, FFHQ face frontalization"),
    "e4e-ffhq-encode": _e("1cUv_reLE6k3604or78EranS7XzuVMWeO", "e4e_ffhq_encode.pt", "e4e", "ffhq",
                          "e4e Encoder4Editing, FFHQ 1024 StyleGAN2"),
    "e4e-cars-encode": _e("17faPqBce2m1AQeLCLHUVXaDfxMRU2QcV", "e4e_cars_encode.pt", "e4e", "cars",
                          "e4e, Stanford Cars on the 512 StyleGAN2 car model"),
    "e4e-horse-encode": _e("1TkLLnuX86B_BMo2ocYD0kX9kWh53rUVX", "e4e_horse_encode.pt", "e4e", "horse",
                           "e4e, LSUN Horse 256 StyleGAN2"),
    "e4e-church-encode": _e("1-L0ZdnQLwtdy6-A_Ccgq5uNJGTqE7qBa", "e4e_church_encode.pt", "e4e", "church",
                            "e4e, LSUN Church 256 StyleGAN2"),
    "hyperstyle-ffhq": _e("1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4", "hyperstyle_ffhq.pt", "hyperstyle", "ffhq",
                          "HyperStyle hypernetwork, FFHQ 1024 (needs its W encoder: faces_w_encoder.pt)",
                          w_encoder="faces_w_encoder.pt"),
    "hyperstyle-cars": _e("1WZ7iNv5ENmxXFn6dzPeue1jQGNp6Nr9d", "hyperstyle_cars.pt", "hyperstyle", "cars",
                          "HyperStyle, Stanford Cars 512 (needs its W encoder: cars_w_encoder.pt)",
                          w_encoder="cars_w_encoder.pt"),
    "hyperstyle-afhq-wild": _e("1OMAKYRp3T6wzGr0s3887rQK-5XHlJ2gp", "hyperstyle_afhq_wild.pt", "hyperstyle",
                               "afhq_wild", "HyperStyle, AFHQ Wild 512 (needs afhq_wild_w_encoder.pt)",
                               w_encoder="afhq_wild_w_encoder.pt"),
    "hyperstyle-afhq-wild-w-encoder": _e("1MhEHGgkTpnTanIwuHYv46i6MJeet2Nlr", "afhq_wild_w_encoder.pt", "w_encoder",
                                         "afhq_wild", "HyperStyle's W encoder for AFHQ Wild"),
    "arcface-ir-se50": _e("1KW7bjndL3QG3sxBbZxreGHigcCCpsDgn", "model_ir_se50.pth", "arcface", "faces",
                          "ArcFace IR-SE50 (TreB1eN) used by pSp/e4e/ReStyle/HyperStyle's ID loss"),
}


def list_models() -> List[dict]:
    return [dict(MODELS[n], name=n) for n in sorted(MODELS)]


def cache_path(name: str) -> Path:
    if MODELS[name].get("bundled"):
        return BUNDLED_DIR / MODELS[name]["filename"]
    return cache_dir() / "encoders" / MODELS[name]["filename"]


def default_for(generator: str):
    """Name of the bundled encoder of ``method`` trained for a bundled generator, per method (or {})."""
    return {e["method"]: n for n, e in MODELS.items() if e.get("bundled") and e.get("generator") == generator}


def resolve(name: str) -> Path:
    """The cached file of a registry entry, or :class:`RegistryError` saying how to provide it."""
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=4, cutoff=0.4)
        raise RegistryError(f"unknown encoder {name!r}" + (f"; did you mean: {', '.join(close)}?" if close else ""))
    p = cache_path(name)
    if p.is_file():
        return p
    e = MODELS[name]
    if e.get("bundled"):
        raise RegistryError(f"the bundled encoder file {p} is missing from this installation; reinstall gankit")
    raise RegistryError(f"{name} is not downloaded: get {e['url']} in a browser (Google Drive, no direct link) and "
                        f"pass the file's path, or place it at {p}")
