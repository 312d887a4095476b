"""Registry of official StyleGAN checkpoints and an atomic, hash-checked download cache.

``resolve(source)`` turns a local path, a registry name (see :func:`list_models`) or an
http(s)/file URL into a local file. Downloads stream into a temporary file inside the
cache directory and are moved into place with :func:`os.replace`, so a file under its
final name is always complete (and sha256-checked when the hash is known).

Environment:
    ``GANKIT_HOME``     cache directory (default ``~/.cache/gankit``)
    ``GANKIT_OFFLINE``  ``1`` = never touch the network; fail at once with a hint
"""
from __future__ import annotations

import difflib
import hashlib
import http.client
import os
import pathlib
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List, Optional

__all__ = ["RegistryError", "OfflineError", "MODELS", "FORMATS", "FAMILIES", "list_models",
           "get", "cache_dir", "cache_path", "resolve", "sha256_file"]

TIMEOUT_S = 30
FORMATS = ("nvidia-pkl", "nvidia-tf", "rosinality", "gankit")
FAMILIES = ("stylegan1", "stylegan2", "stylegan2-ada", "stylegan3-t", "stylegan3-r")
_NC = "NVIDIA Source Code License-NC"


class RegistryError(Exception):
    """Unknown model name, failed download or checksum mismatch."""


class OfflineError(RegistryError):
    """A download failed for a network reason (or ``GANKIT_OFFLINE=1``)."""


def _entry(url, fmt, family, res, desc, mirrors=(), sha256=None, license=_NC, direct_download=True):
    return dict(url=url, mirrors=list(mirrors), format=fmt, family=family, resolution=res,
                license=license, sha256=sha256, description=desc, direct_download=direct_download)


# No NVIDIA source publishes sha256 digests for these files, so every sha256 is None
# (never invented); downloads of such entries are stored without verification.

# --- TF-era StyleGAN2 (config F). Source: NVlabs/stylegan2 pretrained_networks.py (the
# revision that moved gdrive:networks/* to https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/)
# and the stylegan2-ada-pytorch README (legacy.py example with stylegan2-cat-config-f.pkl).
_SG2 = "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/"
# --- StyleGAN2-ADA PyTorch. Source: NVlabs/stylegan2-ada-pytorch README "Data repository"
# table (pretrained/*.pkl) and train.py ``resume_specs`` (transfer-learning-source-nets/*).
_ADA = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
# --- NGC collections. Source: NVlabs/stylegan3 README "Additional material": "Access
# individual networks via https://api.ngc.nvidia.com/v2/models/nvidia/research/<coll>/
# versions/1/files/<MODEL>". Mirror: the newer NGC form .../org/nvidia/team/research/<coll>/
# 1/files?redirect=true&path=<MODEL>, seen in public download scripts for several of these
# files (e.g. stylegan3-r-afhqv2-512x512.pkl, stylegan2-afhqv2-512x512.pkl).


# --- StyleGAN1 (TF pickles, network-state version 3). Source: NVlabs/stylegan README "networks"
# table and generate_figures.py (url_ffhq, url_celebahq, url_bedrooms, url_cars, url_cats), commit
# f3a0446. NVIDIA published them only as Google Drive links: not direct downloads (Drive answers
# large files with a confirmation web page), hence direct_download=False; a failed fetch tells the
# user to download the file in a browser and pass its path.
_GDRIVE = "https://drive.google.com/uc?id="
_CC_BY_NC = "CC BY-NC 4.0"


def _sg1(file_id: str, fname: str, res: int, desc: str) -> dict:
    e = _entry(_GDRIVE + file_id, "nvidia-tf", "stylegan1", res,
               f"StyleGAN (2019), {desc} ({fname}; Google Drive link, not a direct download)",
               license=_CC_BY_NC, direct_download=False)
    e["filename"] = fname   # the URL does not name the file
    return e


def _ngc(coll: str, fname: str) -> dict:
    return dict(
        url=f"https://api.ngc.nvidia.com/v2/models/nvidia/research/{coll}/versions/1/files/{fname}",
        mirrors=[f"https://api.ngc.nvidia.com/v2/models/org/nvidia/team/research/{coll}/1/files"
                 f"?redirect=true&path={fname}"])


def _sg3(cfg: str, data: str, res: int, desc: str) -> dict:
    n = _ngc("stylegan3", f"stylegan3-{cfg}-{data}-{res}x{res}.pkl")
    eq = "translation" if cfg == "t" else "translation+rotation"
    return _entry(n["url"], "nvidia-pkl", f"stylegan3-{cfg}", res,
                  f"StyleGAN3-{cfg.upper()} ({eq} equivariant), {desc} at {res}x{res}", n["mirrors"])


def _sg2_ngc(data: str, res: int, desc: str) -> dict:
    n = _ngc("stylegan2", f"stylegan2-{data}-{res}x{res}.pkl")
    return _entry(n["url"], "nvidia-pkl", "stylegan2-ada", res,
                  f"StyleGAN2 (PyTorch pickle, NGC collection), {desc} at {res}x{res}", n["mirrors"])


# --- gankit's own models, shipped inside the package (``generators/models/``, see MODEL_CARD.md there).
BUNDLED_DIR = pathlib.Path(__file__).resolve().parent / "models"


def _bundled(fname: str, family: str, res: int, desc: str) -> dict:
    e = _entry(None, "gankit", family, res, desc, license="research-only (trained on UTKFace; see MODEL_CARD.md)",
               direct_download=False)
    e["bundled"] = fname
    return e


MODELS: Dict[str, dict] = {
    "gankit-faces": _bundled("gankit-faces-64.safetensors", "stylegan2-ada", 64,
                             "gankit's default face model: StyleGAN2-ADA trained on UTKFace at 64x64 (bundled)"),
    # TF-era StyleGAN2 pickles (G, D, Gs tuples of dnnlib.tflib.Network).
    "stylegan2-ffhq-config-f": _entry(_SG2 + "stylegan2-ffhq-config-f.pkl", "nvidia-tf", "stylegan2",
                                      1024, "StyleGAN2 config F, FFHQ faces at 1024x1024"),
    "stylegan2-car-config-f": _entry(_SG2 + "stylegan2-car-config-f.pkl", "nvidia-tf", "stylegan2",
                                     512, "StyleGAN2 config F, LSUN Car at 512x384 (512 generator, letterboxed)"),
    "stylegan2-cat-config-f": _entry(_SG2 + "stylegan2-cat-config-f.pkl", "nvidia-tf", "stylegan2",
                                     256, "StyleGAN2 config F, LSUN Cat at 256x256"),
    "stylegan2-church-config-f": _entry(_SG2 + "stylegan2-church-config-f.pkl", "nvidia-tf", "stylegan2",
                                        256, "StyleGAN2 config F, LSUN Church at 256x256"),
    "stylegan2-horse-config-f": _entry(_SG2 + "stylegan2-horse-config-f.pkl", "nvidia-tf", "stylegan2",
                                       256, "StyleGAN2 config F, LSUN Horse at 256x256"),
    # StyleGAN2-ADA PyTorch pickles (dict with G, D, G_ema).
    "stylegan2-ada-ffhq-256": _entry(
        _ADA + "transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl", "nvidia-pkl",
        "stylegan2-ada", 256, "StyleGAN2 (paper256 config), FFHQ at 256x256, ADA transfer-learning source"),
    "stylegan2-ada-ffhq-512": _entry(
        _ADA + "transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl", "nvidia-pkl",
        "stylegan2-ada", 512, "StyleGAN2 config F, FFHQ at 512x512, ADA transfer-learning source"),
    "stylegan2-ada-ffhq-1024": _entry(_ADA + "ffhq.pkl", "nvidia-pkl", "stylegan2-ada", 1024,
                                      "StyleGAN2 config F, FFHQ at 1024x1024 (original StyleGAN2 training)"),
    "stylegan2-ada-metfaces-1024": _entry(_ADA + "metfaces.pkl", "nvidia-pkl", "stylegan2-ada", 1024,
                                          "StyleGAN2-ADA, MetFaces at 1024x1024, transfer learning from FFHQ"),
    "stylegan2-ada-afhqcat-512": _entry(_ADA + "afhqcat.pkl", "nvidia-pkl", "stylegan2-ada", 512,
                                        "StyleGAN2-ADA, AFHQ Cat at 512x512, trained from scratch"),
    "stylegan2-ada-afhqdog-512": _entry(_ADA + "afhqdog.pkl", "nvidia-pkl", "stylegan2-ada", 512,
                                        "StyleGAN2-ADA, AFHQ Dog at 512x512, trained from scratch"),
    "stylegan2-ada-afhqwild-512": _entry(_ADA + "afhqwild.pkl", "nvidia-pkl", "stylegan2-ada", 512,
                                         "StyleGAN2-ADA, AFHQ Wild at 512x512, trained from scratch"),
    "stylegan2-ada-brecahad-512": _entry(_ADA + "brecahad.pkl", "nvidia-pkl", "stylegan2-ada", 512,
                                         "StyleGAN2-ADA, BreCaHAD histopathology at 512x512"),
    "stylegan2-ada-cifar10-32": _entry(_ADA + "cifar10.pkl", "nvidia-pkl", "stylegan2-ada", 32,
                                       "StyleGAN2-ADA, class-conditional CIFAR-10 at 32x32"),
    # StyleGAN2 pickles from NGC (stylegan2-ada-pytorch format) without an ADA-CDN twin.
    "stylegan2-ada-ffhqu-1024": _sg2_ngc("ffhqu", 1024, "FFHQ-U (unaligned faces)"),
    "stylegan2-ada-ffhqu-256": _sg2_ngc("ffhqu", 256, "FFHQ-U (unaligned faces)"),
    "stylegan2-ada-metfacesu-1024": _sg2_ngc("metfacesu", 1024, "MetFaces-U (unaligned)"),
    "stylegan2-ada-afhqv2-512": _sg2_ngc("afhqv2", 512, "AFHQv2 (cats+dogs+wild)"),
    "stylegan2-ada-celebahq-256": _sg2_ngc("celebahq", 256, "CelebA-HQ"),
    "stylegan2-ada-lsundog-256": _sg2_ngc("lsundog", 256, "LSUN Dog"),
    # StyleGAN1 (official TF pickles; Google Drive only).
    "stylegan1-ffhq-1024": _sg1("1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ", "karras2019stylegan-ffhq-1024x1024.pkl",
                                1024, "FFHQ faces at 1024x1024"),
    "stylegan1-celebahq-1024": _sg1("1MGqJl28pN4t7SAtSrPdSRJSQJqahkzUf",
                                    "karras2019stylegan-celebahq-1024x1024.pkl", 1024, "CelebA-HQ faces at 1024x1024"),
    "stylegan1-bedrooms-256": _sg1("1MOSKeGF0FJcivpBI7s63V9YHloUTORiF", "karras2019stylegan-bedrooms-256x256.pkl",
                                   256, "LSUN Bedroom at 256x256"),
    "stylegan1-cars-512": _sg1("1MJ6iCfNtMIRicihwRorsM3b7mmtmK9c3", "karras2019stylegan-cars-512x384.pkl", 512,
                               "LSUN Car at 512x384 (512x512 network, letterboxed)"),
    "stylegan1-cats-256": _sg1("1MQywl0FNt6lHu8E_EUqnRbviagS7fbiJ", "karras2019stylegan-cats-256x256.pkl", 256,
                               "LSUN Cat at 256x256"),
    # StyleGAN3 (alias-free) pickles.
    "stylegan3-t-ffhq-1024": _sg3("t", "ffhq", 1024, "FFHQ"),
    "stylegan3-t-ffhqu-1024": _sg3("t", "ffhqu", 1024, "FFHQ-U (unaligned)"),
    "stylegan3-t-ffhqu-256": _sg3("t", "ffhqu", 256, "FFHQ-U (unaligned)"),
    "stylegan3-t-metfaces-1024": _sg3("t", "metfaces", 1024, "MetFaces"),
    "stylegan3-t-metfacesu-1024": _sg3("t", "metfacesu", 1024, "MetFaces-U (unaligned)"),
    "stylegan3-t-afhqv2-512": _sg3("t", "afhqv2", 512, "AFHQv2"),
    "stylegan3-r-ffhq-1024": _sg3("r", "ffhq", 1024, "FFHQ"),
    "stylegan3-r-ffhqu-1024": _sg3("r", "ffhqu", 1024, "FFHQ-U (unaligned)"),
    "stylegan3-r-ffhqu-256": _sg3("r", "ffhqu", 256, "FFHQ-U (unaligned)"),
    "stylegan3-r-metfaces-1024": _sg3("r", "metfaces", 1024, "MetFaces"),
    "stylegan3-r-metfacesu-1024": _sg3("r", "metfacesu", 1024, "MetFaces-U (unaligned)"),
    "stylegan3-r-afhqv2-512": _sg3("r", "afhqv2", 512, "AFHQv2"),
}


def list_models() -> List[dict]:
    """All registry entries as dicts (copies), each with its ``name``, sorted by name."""
    return [get(n) for n in sorted(MODELS)]


def get(name: str) -> dict:
    """The entry for ``name`` (a copy with ``name`` added); unknown → :class:`RegistryError`."""
    if name in MODELS:
        return dict(MODELS[name], name=name, mirrors=list(MODELS[name]["mirrors"]))
    low = str(name).lower()
    close = [n for n in sorted(MODELS) if low and low in n]
    close += [n for n in difflib.get_close_matches(low, list(MODELS), n=5, cutoff=0.5) if n not in close]
    hint = f"; did you mean: {', '.join(close[:8])}?" if close else "; see generators.registry.list_models()"
    raise RegistryError(f"unknown model {name!r}{hint}")


def cache_dir() -> pathlib.Path:
    """``$GANKIT_HOME`` or ``~/.cache/gankit``; created on first use."""
    d = pathlib.Path(os.environ.get("GANKIT_HOME") or pathlib.Path.home() / ".cache" / "gankit").expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _url_filename(url: str) -> str:
    """File name a URL serves: NGC's ``?path=`` query, else the last path component."""
    parts = urllib.parse.urlsplit(url)
    qpath = urllib.parse.parse_qs(parts.query).get("path")
    name = os.path.basename(qpath[0] if qpath else urllib.parse.unquote(parts.path)) or "download"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def cache_path(name_or_url: str) -> pathlib.Path:
    """Where ``resolve`` keeps a registry model (``<name>.<ext>``) or an ad-hoc URL's file."""
    if name_or_url in MODELS and MODELS[name_or_url].get("bundled"):
        return BUNDLED_DIR / MODELS[name_or_url]["bundled"]
    if name_or_url in MODELS:
        e = MODELS[name_or_url]
        return cache_dir() / (name_or_url + os.path.splitext(e.get("filename") or _url_filename(e["url"]))[1])
    for n, e in MODELS.items():  # a registry URL maps to its entry's cache file
        if name_or_url == e["url"] or name_or_url in e["mirrors"]:
            return cache_path(n)
    key = hashlib.sha256(name_or_url.encode()).hexdigest()[:10]
    return cache_dir() / "urls" / f"{key}-{_url_filename(name_or_url)}"


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _hint(url: str, dest: pathlib.Path, why: str) -> str:
    return (f"cannot download {url} ({why}): download it elsewhere and pass the local file path "
            f"instead, or place it at {dest}")


_NET_ERRORS = (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError,
               http.client.HTTPException)


def _fetch(url: str, dest: pathlib.Path, sha256: Optional[str]) -> None:
    """Stream ``url`` into a temp file next to ``dest``, check sha256, ``os.replace`` into place."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(url, headers={"User-Agent": "gankit"})
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                ctype = (resp.headers.get("Content-Type") or "").lower()
                if ctype.startswith("text/html"):   # e.g. Google Drive's large-file confirmation page
                    raise RegistryError(_hint(url, dest, "the server sent a web page, not the file; download "
                                                         "it in a browser"))
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                          desc=dest.name, leave=False) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
                        bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if sha256 and h.hexdigest().lower() != sha256.lower():
            raise RegistryError(f"sha256 mismatch for {url}: expected {sha256}, got {h.hexdigest()}; "
                                f"the download was discarded")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _download(urls: List[str], dest: pathlib.Path, sha256: Optional[str]) -> pathlib.Path:
    """Try ``urls`` in order; network failures become :class:`OfflineError`."""
    first = urls[0]
    if os.environ.get("GANKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        urls = [u for u in urls if u.lower().startswith("file:")]
        if not urls:
            raise OfflineError(_hint(first, dest, "offline?"))
    err, err_url = None, first
    for url in urls:
        try:
            _fetch(url, dest, sha256)
            return dest
        except _NET_ERRORS as e:  # try the next mirror; report the last failure
            err, err_url = e, url
    if err_url.lower().startswith("file:"):
        raise RegistryError(f"cannot read {err_url}: {getattr(err, 'reason', err)}") from None
    if isinstance(err, urllib.error.HTTPError):  # the server answered: not an offline problem
        raise RegistryError(_hint(first, dest, f"HTTP {err.code} {err.reason}")) from None
    raise OfflineError(_hint(first, dest, "offline?")) from None


def resolve(source) -> pathlib.Path:
    """Local file for ``source``: an existing path (returned as is), a registry name or a URL.

    Registry models and URLs are cached under :func:`cache_dir` and downloaded when missing.
    """
    if isinstance(source, os.PathLike) or os.path.exists(os.path.expanduser(str(source))):
        p = pathlib.Path(source).expanduser()
        if p.exists():
            return p
        raise RegistryError(f"no such file: {p}")
    source = str(source)
    if source in MODELS and MODELS[source].get("bundled"):
        path = BUNDLED_DIR / MODELS[source]["bundled"]
        if not path.is_file():
            raise RegistryError(f"the bundled model file {path} is missing from this installation; reinstall gankit")
        return path
    if source.lower().startswith(("http://", "https://", "file://")):
        dest = cache_path(source)
        entry = next((e for e in MODELS.values() if source == e["url"] or source in e["mirrors"]), None)
        urls, sha = [source], (entry["sha256"] if entry else None)
    else:
        try:
            entry = get(source)
        except RegistryError as e:
            raise RegistryError(f"no such file, and {e}") from None
        dest, urls, sha = cache_path(source), [entry["url"]] + entry["mirrors"], entry["sha256"]
    if dest.is_file():
        return dest
    return _download(urls, dest, sha)
