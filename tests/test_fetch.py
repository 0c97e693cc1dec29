"""Downloads against a local HTTP server: checksums, resume with Range, safe tar extraction, CLI status."""

import dataclasses
import gzip
import hashlib
import io
import tarfile
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ticketlab.data import REMOTES, fetch, load_dataset
from ticketlab.data.fetch import download, extract_tar, fetch_remote
from ticketlab.errors import TicketlabError

from .conftest import assert_user_error, main_in_process, run_cli
from .test_data import cifar_files, idx_files


class FileServer:
    """Serves `files` (name -> bytes) at /<name>, honours `Range: bytes=N-`, records every request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.honour_range = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path.lstrip("/"))
                if body is None:
                    return self.send_error(HTTPStatus.NOT_FOUND)
                start = self.range_start()
                if start is not None and start >= len(body):
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    return self.end_headers()
                if start is None:
                    self.send_response(HTTPStatus.OK)
                    start = 0
                else:
                    self.send_response(HTTPStatus.PARTIAL_CONTENT)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

            def range_start(self) -> int | None:
                header = self.headers.get("Range")
                if not server.honour_range or not header or not header.startswith("bytes="):
                    return None
                return int(header[len("bytes="):].split("-")[0])

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def file_requests(self, name: str) -> list[str | None]:
        return [rng for path, rng in self.requests if path == "/" + name]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # never route the loopback through a proxy
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("TICKETLAB_MIRROR", raising=False)
    s = FileServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def mnist_gz_files() -> dict[str, bytes]:
    return {name + ".gz": gzip.compress(data, mtime=0) for name, data in idx_files().items()}


def test_fetch_mnist_from_mirror_then_load(server, tmp_path):
    server.files = mnist_gz_files()
    remote = dataclasses.replace(REMOTES["mnist"], files={n: md5(d) for n, d in server.files.items()})
    folder = fetch_remote(remote, tmp_path, mirror=server.url, quiet=True)
    assert folder == tmp_path / "mnist"
    assert {p.name for p in folder.iterdir()} == set(server.files)  # no .part left behind
    assert load_dataset("mnist", root=tmp_path, val_size=5).test.x.shape == (12, 1, 28, 28)
    count = len(server.requests)
    fetch_remote(remote, tmp_path, mirror=server.url, quiet=True)  # verified files are not fetched again
    assert len(server.requests) == count


def test_sha256_digests_are_accepted(server, tmp_path):
    server.files = {"blob": b"x" * 5000}
    path = download(server.url + "blob", tmp_path / "blob", hashlib.sha256(b"x" * 5000).hexdigest(), quiet=True)
    assert path.read_bytes() == b"x" * 5000


def test_resume_sends_a_range_request_and_appends(server, tmp_path):
    body = bytes(range(256)) * 400
    server.files = {"data.bin": body}
    (tmp_path / "data.bin.part").write_bytes(body[:30000])
    path = download(server.url + "data.bin", tmp_path / "data.bin", md5(body), quiet=True)
    assert path.read_bytes() == body and not (tmp_path / "data.bin.part").exists()
    assert server.file_requests("data.bin") == ["bytes=30000-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    body = b"abc" * 10000
    server.files = {"data.bin": body}
    server.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"stale prefix that must not survive")
    assert download(server.url + "data.bin", tmp_path / "data.bin", md5(body), quiet=True).read_bytes() == body


def test_complete_part_file_is_verified_without_refetching(server, tmp_path):
    body = b"complete" * 100
    server.files = {"data.bin": body}
    (tmp_path / "data.bin.part").write_bytes(body)
    assert download(server.url + "data.bin", tmp_path / "data.bin", md5(body), quiet=True).read_bytes() == body
    assert server.file_requests("data.bin") == [f"bytes={len(body)}-"]  # answered 416: nothing left to send


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    server.files = {"data.bin": b"corrupted payload"}
    expected = md5(b"the real payload")
    with pytest.raises(TicketlabError) as error:
        download(server.url + "data.bin", tmp_path / "data.bin", expected, quiet=True)
    message = str(error.value)
    assert "data.bin" in message and expected in message and md5(b"corrupted payload") in message
    assert list(tmp_path.iterdir()) == []  # neither the final file nor the .part


def test_corrupt_part_file_fails_verification_and_is_removed(server, tmp_path):
    body = b"0123456789" * 1000
    server.files = {"data.bin": body}
    (tmp_path / "data.bin.part").write_bytes(b"X" * 500)  # wrong prefix: resumed file is corrupt
    with pytest.raises(TicketlabError, match="checksum mismatch for data.bin"):
        download(server.url + "data.bin", tmp_path / "data.bin", md5(body), quiet=True)
    assert list(tmp_path.iterdir()) == []
    assert download(server.url + "data.bin", tmp_path / "data.bin", md5(body), quiet=True).read_bytes() == body


def test_http_error_is_a_user_error(server, tmp_path):
    with pytest.raises(TicketlabError, match="missing.bin failed: HTTP 404"):
        download(server.url + "missing.bin", tmp_path / "missing.bin", md5(b""), quiet=True)


def test_mirror_from_environment(server, tmp_path, monkeypatch):
    server.files = mnist_gz_files()
    monkeypatch.setitem(REMOTES, "mnist",
                        dataclasses.replace(REMOTES["mnist"], files={n: md5(d) for n, d in server.files.items()}))
    monkeypatch.setenv("TICKETLAB_MIRROR", server.url)
    fetch("mnist", tmp_path, quiet=True)
    assert len(server.requests) == 4 and (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def test_fetch_cifar_archive_extracts_and_loads(server, tmp_path):
    archive = tar_gz({f"cifar-10-batches-py/{n}": d for n, d in cifar_files().items()})
    server.files = {"cifar-10-python.tar.gz": archive}
    remote = dataclasses.replace(REMOTES["cifar10"], files={"cifar-10-python.tar.gz": md5(archive)})
    folder = fetch_remote(remote, tmp_path, mirror=server.url, quiet=True)
    assert folder == tmp_path / "cifar-10-batches-py"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]  # archive and temp dir gone
    assert len(load_dataset("cifar10", root=tmp_path, val_size=2).train) == 18
    fetch_remote(remote, tmp_path, mirror=server.url, quiet=True)
    assert len(server.requests) == 1  # already unpacked: nothing downloaded again


@pytest.mark.parametrize(("members", "links"), [
    ({"../escaped": b"x"}, None),
    ({"/tmp/absolute-ticketlab-test": b"x"}, None),
    ({"cifar-10-batches-py/a": b"x"}, {"cifar-10-batches-py/link": "/etc/passwd"}),
])
def test_unsafe_tar_members_are_refused(tmp_path, members, links):
    archive = tmp_path / "dl" / "evil.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(tar_gz(members, links))
    with pytest.raises(TicketlabError, match="unsafe member"):
        extract_tar(archive, tmp_path / "dl")
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["evil.tar.gz"]
    assert not (tmp_path / "escaped").exists()


def test_cli_fetch_checksum_mismatch_exits_2(server, tmp_path):
    server.files = {name: b"not the official file" for name in mnist_gz_files()}  # official MD5s apply
    result = run_cli("data", "fetch", "mnist", "--dir", tmp_path, "--mirror", server.url, "--quiet")
    assert_user_error(result, "checksum mismatch for train-images-idx3-ubyte.gz",
                      "f68b3c2dcbeaaa9fbdd348bbdeb94873")
    assert not any((tmp_path / "mnist").iterdir())


def test_cli_fetch_unknown_name(tmp_path, capsys):
    # through the command's main() in this process (its real command line's errors: the checksum test above)
    assert_user_error(main_in_process(capsys, "data", "fetch", "cifar100", "--dir", tmp_path),
                      "unknown downloadable dataset")
