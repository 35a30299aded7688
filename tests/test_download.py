"""Fetching CREMA-D over HTTP, offline: a local server with a tiny fake corpus behind Git LFS."""

import hashlib
import http.server
import io
import threading

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from fairser import corpus, download
from fairser.errors import InputError
from fairser.constants import SAMPLE_RATE
from fairser.schema import CREMA_D_CLASSES as EMOTIONS


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes), honours `Range: bytes=N-`, and logs each request."""

    def __init__(self, files):
        self.files, self.log = files, []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.server.files.get(self.path)
        rng = self.headers.get("Range")
        self.server.log.append((self.path, rng))
        if body is None:
            self.send_error(404)
            return
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
        if start >= len(body) and rng:
            self.send_error(416)
            return
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(files):
        server = Server(files)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _wav(seconds, sr, channels=1, subtype="PCM_16"):
    t = np.arange(int(seconds * sr)) / sr
    x = np.repeat((0.3 * np.sin(2 * np.pi * 220 * t))[:, None], channels, 1)
    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _pointer(data):
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


CLIPS = {  # a 16 kHz mono clip, a 44.1 kHz 24-bit stereo clip, a broken empty clip
    "1001_DFA_ANG_XX.wav": _wav(0.5, 16000),
    "1002_IEO_HAP_HI.wav": _wav(0.4, 44100, 2, "PCM_24"),
    "1003_MTI_SAD_XX.wav": b"",
}


def _fake_crema_d():
    """Upstream files of a three-actor fake CREMA-D, keyed by URL path, and their checksums."""
    demo = "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n" \
           "1002,21,Female,Asian,Not Hispanic\n1003,60,Female,Unknown,Hispanic\n" \
           "1004,35,Male,African American,Not Hispanic\n"
    files = {"/raw/VideoDemographics.csv": demo.encode()}
    names = [*CLIPS, "1004_TSI_NEU_XX.wav"]  # the last one is absent upstream
    rows = []
    for i, name in enumerate(names):
        p = np.full(6, 0.01)
        p[i % 6] = 0.95
        rows.append([name, *p, int(name[:4]), "Male"])
    for f in range(1, 6):
        df = pd.DataFrame(rows, columns=["FileName", *EMOTIONS, "SpkrID", "Gender"])
        df["Split_Set"] = [("Train", "Development", "Test")[(i + f) % 3] for i in range(len(rows))]
        files[f"/es/data/CREMA-D/Primary/labels_consensus_{f}.csv"] = df.to_csv(index=False).encode()
    for name, data in CLIPS.items():
        files[f"/raw/AudioWAV/{name}"] = _pointer(data)
        files[f"/lfs/AudioWAV/{name}"] = data
    prefix = {"crema_d_raw": "/raw/", "emo_superb_raw": "/es/"}
    checksums = {key: hashlib.sha256(files[prefix[param] + path]).hexdigest()
                 for key, (param, path, _) in corpus.METADATA.items()}
    return files, checksums


def _urls(base):
    return {"crema_d_raw": f"{base}/raw", "crema_d_lfs": f"{base}/lfs", "emo_superb_raw": f"{base}/es"}


def test_download_builds_the_corpus_end_to_end(tmp_path, serve):
    files, checksums = _fake_crema_d()
    _, base = serve(files)
    out = corpus.build_crema_d(tmp_path / "corpus", urls=_urls(base), cache=tmp_path / "cache",
                               checksums=checksums, workers=2)
    clips = pd.read_csv(out / "clips.csv")
    assert list(clips["file"]) == [*CLIPS, "1004_TSI_NEU_XX.wav"]  # every labelled clip
    assert list(clips["emotion"]) == ["angry", "happy", "sad", "neutral"]
    assert list(clips["level"]) == ["XX", "HI", "XX", "XX"]
    assert list(clips["split_1"]) == ["dev", "test", "train", "dev"]  # (i + 1) % 3
    assert sorted(p.name for p in (out / "wav").iterdir()) == ["1001_DFA_ANG_XX.wav", "1002_IEO_HAP_HI.wav"]
    skipped = pd.read_csv(out / "skipped.csv").set_index("file")["reason"].to_dict()
    assert skipped == {"1003_MTI_SAD_XX.wav": "empty file", "1004_TSI_NEU_XX.wav": "not found upstream"}
    for name, seconds in [("1001_DFA_ANG_XX.wav", 0.5), ("1002_IEO_HAP_HI.wav", 0.4)]:
        info = sf.info(out / "wav" / name)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert info.frames == round(seconds * SAMPLE_RATE)
    assert len(pd.read_csv(out / "actors.csv")) == 4


def test_download_resumes_a_partial_file(tmp_path, serve):
    data = CLIPS["1001_DFA_ANG_XX.wav"]
    server, base = serve({"/clip.wav": data})
    dest = tmp_path / "cache" / "clip.wav"
    dest.parent.mkdir()
    (tmp_path / "cache" / "clip.wav.part").write_bytes(data[:5000])
    download.fetch(f"{base}/clip.wav", dest, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert dest.read_bytes() == data
    assert server.log == [("/clip.wav", "bytes=5000-")]
    assert not (tmp_path / "cache" / "clip.wav.part").exists()


def test_download_trusts_a_verified_cached_file_without_asking(tmp_path, serve):
    data = b"abc"
    server, base = serve({"/x": data})
    dest = tmp_path / "x"
    dest.write_bytes(data)
    download.fetch(f"{base}/x", dest, sha256=hashlib.sha256(data).hexdigest())
    assert server.log == []


def test_download_checksum_mismatch_is_a_one_line_error_naming_the_file(tmp_path, serve):
    files, checksums = _fake_crema_d()
    checksums["crema-d/VideoDemographics.csv"] = "0" * 64
    _, base = serve(files)
    message = r"VideoDemographics\.csv: sha256 [0-9a-f]{64} does not match"
    with pytest.raises(InputError, match=message) as err:
        corpus.build_crema_d(tmp_path / "corpus", urls=_urls(base), cache=tmp_path / "cache",
                             checksums=checksums)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "corpus").exists()


def test_lfs_content_that_does_not_match_its_pointer_is_an_error(tmp_path, serve):
    files, checksums = _fake_crema_d()
    # Same size as the pointer says, other content.
    size = len(CLIPS["1001_DFA_ANG_XX.wav"])
    files["/lfs/AudioWAV/1001_DFA_ANG_XX.wav"] = CLIPS["1002_IEO_HAP_HI.wav"][:size]
    _, base = serve(files)
    with pytest.raises(InputError, match="1001_DFA_ANG_XX.wav: sha256"):
        corpus.build_crema_d(tmp_path / "corpus", urls=_urls(base), cache=tmp_path / "cache",
                             checksums=checksums, workers=1)
    assert not (tmp_path / "corpus").exists()


@pytest.mark.parametrize("url", ["http://example.org/x", "ftp://127.0.0.1/x", "file:///etc/passwd"])
def test_only_https_or_local_http_urls_are_accepted(url):
    with pytest.raises(InputError, match="corpus.urls.crema_d_raw"):
        download.check_url(url, "corpus.urls.crema_d_raw")


def test_lfs_pointer_parses_oid_and_size():
    data = b"hello"
    assert download.parse_lfs_pointer(_pointer(data)) == (hashlib.sha256(data).hexdigest(), 5)
    assert download.parse_lfs_pointer(CLIPS["1001_DFA_ANG_XX.wav"]) is None
    assert download.parse_lfs_pointer(b"") is None
