"""Hostile networks (issue 17): a server that closes early leaves the `.part` file for a Range resume, an endless
body stops at the cap, and the DDP rendezvous store listens on the loopback interface only."""

import hashlib
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ticketlab.data.fetch import download
from ticketlab.errors import TicketlabError

from .test_fetch import server  # noqa: F401 - the honest server fixture

BODY = bytes(range(256)) * 40  # 10,240 bytes


class Liar(BaseHTTPRequestHandler):
    """Announces BODY's length and closes after 4,000 bytes (`/short`), or sends bytes without end and without a
    Content-Length (`/endless`) until the client hangs up."""

    def do_GET(self):
        self.send_response(200)
        if self.path == "/short":
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:4000])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        try:
            while True:
                self.wfile.write(b"z" * 65536)
        except OSError:  # the client stopped reading
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def liar(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def one_line(error: TicketlabError, *needles: str) -> None:
    assert "\n" not in str(error) and all(n in str(error) for n in needles), str(error)


def test_a_server_that_closes_early_leaves_the_part_file_and_the_next_fetch_resumes(liar, server, tmp_path):  # noqa: F811
    digest = hashlib.md5(BODY).hexdigest()
    with pytest.raises(TicketlabError) as e:
        download(liar + "short", tmp_path / "data.bin", digest, quiet=True)
    one_line(e.value, "run the fetch again to resume from", "data.bin.part")
    assert (tmp_path / "data.bin.part").read_bytes() == BODY[:4000] and not (tmp_path / "data.bin").exists()
    server.files = {"data.bin": BODY}
    assert download(server.url + "data.bin", tmp_path / "data.bin", digest, quiet=True).read_bytes() == BODY
    assert server.file_requests("data.bin") == ["bytes=4000-"]


def test_an_endless_body_stops_at_the_cap(liar, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[download.__module__], "MAX_BYTES", 1 << 20)  # the package shadows the module
    with pytest.raises(TicketlabError) as e:
        download(liar + "endless", tmp_path / "data.bin", "0" * 32, quiet=True)
    one_line(e.value, "data.bin")
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 1 << 20


def listening(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) of the sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(addr)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp")
def test_the_rendezvous_store_listens_on_loopback_only(monkeypatch):
    from torch.distributed.elastic.rendezvous import RendezvousParameters, rendezvous_handler_registry

    from ticketlab.engine.distributed import loopback

    monkeypatch.delenv(loopback.ADDR_ENV, raising=False)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    with loopback.bound_rendezvous() as endpoint:
        host, port = endpoint.rsplit(":", 1)
        assert host == "127.0.0.1"
        handler = rendezvous_handler_registry.create_handler(RendezvousParameters(
            backend=loopback.BACKEND, endpoint=endpoint, run_id="torture", min_nodes=1, max_nodes=1, rank=0))
        info = handler.next_rendezvous()  # the store now listens
        assert listening(int(port)) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 nor ::
        info.store.set("k", "v")
        with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
            pass


def read_only(monkeypatch) -> None:
    """A read-only mount: creating directories and files, and renaming into place, fail with EROFS."""
    import errno

    def boom(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    real_open = os.open
    monkeypatch.setattr(os, "mkdir", boom)
    monkeypatch.setattr(os, "replace", boom)
    monkeypatch.setattr(os, "open", lambda p, flags, *a, **k: boom() if flags & (os.O_WRONLY | os.O_RDWR)
                        else real_open(p, flags, *a, **k))


def test_data_fetch_onto_a_read_only_mount_is_one_line(server, tmp_path, monkeypatch):  # noqa: F811
    server.files = {"data.bin": BODY}
    read_only(monkeypatch)
    with pytest.raises(TicketlabError) as e:
        download(server.url + "data.bin", tmp_path / "sub" / "data.bin", hashlib.md5(BODY).hexdigest(), quiet=True)
    one_line(e.value, "read-only")


def test_a_sweep_onto_a_read_only_mount_is_one_line(tmp_path, monkeypatch):
    from ticketlab.sweep import parse_spec, run_sweep

    spec = parse_spec({"preset": "mlp-digits", "set": {"train.steps": "2it"}, "grid": {"seeds": [0]}})
    read_only(monkeypatch)
    with pytest.raises(TicketlabError) as e:
        run_sweep(spec, tmp_path / "sweep", quiet=True)
    one_line(e.value, "read-only")
