"""Registry data and the download cache, fully offline (file:// URLs, refused localhost ports)."""
import hashlib
import pathlib
import time

import pytest

from generators import registry
from generators.registry import OfflineError, RegistryError


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh GANKIT_HOME; network allowed unless a test sets GANKIT_OFFLINE."""
    d = tmp_path / "gankit-home"
    monkeypatch.setenv("GANKIT_HOME", str(d))
    monkeypatch.delenv("GANKIT_OFFLINE", raising=False)
    return d


@pytest.fixture
def payload(tmp_path):
    src = tmp_path / "src" / "model.pkl"
    src.parent.mkdir()
    data = b"not really a pickle" * 1000
    src.write_bytes(data)
    return src, hashlib.sha256(data).hexdigest()


def _leftovers(d: pathlib.Path):
    return [p for p in d.rglob("*") if p.is_file() and p.name.endswith(".part")]


def test_entries_well_formed():
    models = registry.list_models()
    assert len(models) >= 25
    families = {m["family"] for m in models}
    assert {"stylegan2", "stylegan2-ada", "stylegan3-t", "stylegan3-r"} <= families
    for m in models:
        if m.get("bundled"):            # shipped in the package: a file, no URL
            assert m["url"] is None and (registry.BUNDLED_DIR / m["bundled"]).is_file(), m["name"]
        else:
            assert m["url"].startswith("https://"), m["name"]
        assert all(u.startswith("https://") for u in m["mirrors"])
        assert m["format"] in registry.FORMATS
        assert m["family"] in registry.FAMILIES
        r = m["resolution"]
        assert isinstance(r, int) and r >= 4 and r & (r - 1) == 0, (m["name"], r)
        assert m["license"] and m["description"] and "\n" not in m["description"]
        assert m["sha256"] is None or (len(m["sha256"]) == 64 and int(m["sha256"], 16) >= 0)
    names = [m["name"] for m in models]
    assert len(set(names)) == len(names)
    urls = [m["url"] for m in models if not m.get("bundled")]
    assert len(set(urls)) == len(urls)
    for n in ("stylegan2-ffhq-config-f", "stylegan2-ada-ffhq-1024", "stylegan3-t-ffhq-1024",
              "stylegan3-r-afhqv2-512"):
        assert n in names
    assert registry.get("stylegan2-ffhq-config-f")["format"] == "nvidia-tf"
    assert registry.get("stylegan3-r-ffhqu-256")["resolution"] == 256


def test_get_returns_copy():
    e = registry.get("stylegan3-t-ffhq-1024")
    e["url"] = "changed"
    e["mirrors"].append("x")
    assert registry.get("stylegan3-t-ffhq-1024")["url"] != "changed"
    assert "x" not in registry.get("stylegan3-t-ffhq-1024")["mirrors"]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(RegistryError) as ei:
        registry.get("stylegan3-t-ffhq-1042")
    assert "stylegan3-t-ffhq-1024" in str(ei.value)
    with pytest.raises(RegistryError) as ei:
        registry.get("afhqcat")
    assert "stylegan2-ada-afhqcat-512" in str(ei.value)


def test_resolve_local_path_is_identity(tmp_path, home):
    f = tmp_path / "mine.pkl"
    f.write_bytes(b"x")
    assert registry.resolve(f) == f
    assert registry.resolve(str(f)) == f
    assert not home.exists()  # nothing created for local files
    with pytest.raises(RegistryError):
        registry.resolve(tmp_path / "missing.pkl")
    with pytest.raises(RegistryError, match="did you mean"):
        registry.resolve("stylegan3-r-ffhq-1025")


def test_file_url_download_is_atomic_and_hashed(home, payload):
    src, digest = payload
    url = src.as_uri()
    out = registry.resolve(url)
    assert out.is_file() and home in out.parents
    assert out.read_bytes() == src.read_bytes()
    assert registry.sha256_file(out) == digest
    assert _leftovers(home) == []
    src.unlink()  # a second resolve is served from the cache
    assert registry.resolve(url) == out


def test_registry_name_download_checks_hash(home, payload, monkeypatch):
    src, digest = payload
    fake = dict(url=src.as_uri(), mirrors=[], format="nvidia-pkl", family="stylegan2-ada",
                resolution=256, license="test", sha256=digest, description="test entry")
    monkeypatch.setitem(registry.MODELS, "test-model-256", fake)
    out = registry.resolve("test-model-256")
    assert out == registry.cache_path("test-model-256") and out.name == "test-model-256.pkl"
    assert registry.sha256_file(out) == digest

    monkeypatch.setitem(registry.MODELS, "test-bad-256", dict(fake, sha256="0" * 64))
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        registry.resolve("test-bad-256")
    assert not registry.cache_path("test-bad-256").exists()
    assert _leftovers(home) == []
    assert sorted(p.name for p in home.rglob("*") if p.is_file()) == ["test-model-256.pkl"]


def test_mirror_used_when_primary_fails(home, payload, monkeypatch):
    src, digest = payload
    fake = dict(url=(src.parent / "nope.pkl").as_uri(), mirrors=[src.as_uri()], format="nvidia-pkl",
                family="stylegan3-t", resolution=256, license="test", sha256=None, description="t")
    monkeypatch.setitem(registry.MODELS, "test-mirror-256", fake)
    with pytest.raises(RegistryError, match="cannot read"):  # missing file:// is not "offline"
        registry.resolve(fake["url"])
    assert registry.sha256_file(registry.resolve("test-mirror-256")) == digest


def test_offline_env_fails_without_network(home, monkeypatch):
    monkeypatch.setenv("GANKIT_OFFLINE", "1")

    def boom(*a, **k):
        raise AssertionError("network touched")

    monkeypatch.setattr(registry.urllib.request, "urlopen", boom)
    name = "stylegan3-t-ffhq-1024"
    with pytest.raises(OfflineError) as ei:
        registry.resolve(name)
    msg = str(ei.value)
    assert "\n" not in msg
    assert registry.get(name)["url"] in msg
    assert "local file path" in msg and str(registry.cache_path(name)) in msg
    assert not registry.cache_path(name).exists() and _leftovers(home) == []
    with pytest.raises(OfflineError, match="https://example.invalid/x.pkl"):
        registry.resolve("https://example.invalid/x.pkl")


def test_unreachable_url_is_offline_error_quickly(home):
    url = "http://127.0.0.1:9/x.pkl"  # discard port: connection refused at once
    t0 = time.monotonic()
    with pytest.raises(OfflineError) as ei:
        registry.resolve(url)
    assert time.monotonic() - t0 < 10
    assert url in str(ei.value) and "local file path" in str(ei.value)
    assert isinstance(ei.value, RegistryError)
    assert _leftovers(home) == [] and not registry.cache_path(url).exists()


def test_ngc_cache_name_from_query():
    url = ("https://api.ngc.nvidia.com/v2/models/org/nvidia/team/research/stylegan3/1/files"
           "?redirect=true&path=stylegan3-t-ffhqu-256x256.pkl")
    assert registry.cache_path(url) == registry.cache_path("stylegan3-t-ffhqu-256")
    other = "https://example.com/a/files?redirect=true&path=foo-256.pkl"
    assert registry.cache_path(other).name.endswith("-foo-256.pkl")


def test_interrupted_download_leaves_nothing(home, monkeypatch):
    class Resp:
        headers = {"Content-Length": "4096"}
        chunks = [b"x" * 1024]

        def read(self, n):
            if self.chunks:
                return self.chunks.pop()
            raise ConnectionResetError("peer went away")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(registry.urllib.request, "urlopen", lambda *a, **k: Resp())
    url = "https://example.invalid/half.pkl"
    with pytest.raises(OfflineError, match="half.pkl"):
        registry.resolve(url)
    assert not registry.cache_path(url).exists() and _leftovers(home) == []


def test_file_url_works_when_offline(home, payload, monkeypatch):
    src, digest = payload
    monkeypatch.setenv("GANKIT_OFFLINE", "1")
    assert registry.sha256_file(registry.resolve(src.as_uri())) == digest
