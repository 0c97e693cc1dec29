"""Where `ticketlab run --nproc N` listens: the rendezvous store (a c10d TCPStore) and gloo's connections between
ranks bind 127.0.0.1 unless TICKETLAB_DDP_ADDR names another address (e.g. 0.0.0.0).

A TCPStore given host 127.0.0.1 still listens on every interface (it binds the port alone), so the store is handed a
socket bound here instead (`master_listen_fd`), registered as torchrun's rendezvous backend "ticketlab-static" (its
"static" backend, with that one change). Gloo picks its interface from the hostname unless GLOO_SOCKET_IFNAME says
otherwise: `lo` is set for the workers when the address is loopback and the variable is unset."""

import contextlib
import datetime
import os
import socket

ADDR_ENV = "TICKETLAB_DDP_ADDR"
BACKEND = "ticketlab-static"
LOOPBACK = "127.0.0.1"


def address() -> str:
    return os.environ.get(ADDR_ENV, LOOPBACK)


def listening_socket(addr: str) -> socket.socket:
    """A TCP socket bound to `addr` on a free port, listening (the store accepts on it)."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((addr, 0))
    sock.listen(128)
    return sock


@contextlib.contextmanager
def bound_rendezvous():
    """Register the backend for one launch; yields its endpoint (host:port). The store takes the socket over."""
    from torch.distributed import PrefixStore, TCPStore
    from torch.distributed.elastic.rendezvous import RendezvousInfo, rendezvous_handler_registry
    from torch.distributed.elastic.rendezvous.api import RendezvousStoreInfo
    from torch.distributed.elastic.rendezvous.static_tcp_rendezvous import StaticTCPRendezvous, create_rdzv_handler

    sock = listening_socket(address())

    class BoundStaticRendezvous(StaticTCPRendezvous):
        def get_backend(self) -> str:
            return BACKEND

        def next_rendezvous(self) -> RendezvousInfo:
            if not self._store:
                self._store = TCPStore(self.master_addr, self.master_port, self.world_size, True,
                                       datetime.timedelta(seconds=self.timeout.total_seconds()), multi_tenant=True,
                                       master_listen_fd=sock.detach(), use_libuv=True)
            return RendezvousInfo(PrefixStore(self.run_id, self._store), self.rank, self.world_size,
                                  RendezvousStoreInfo(self.master_addr, self.master_port))

    def create(params):
        plain = create_rdzv_handler(params)
        return BoundStaticRendezvous(plain.master_addr, plain.master_port, plain.rank, plain.world_size,
                                     plain.run_id, int(plain.timeout.total_seconds()))

    if BACKEND not in rendezvous_handler_registry._registry:
        rendezvous_handler_registry.register(BACKEND, create)
    else:  # a second launch in this process: the new socket
        rendezvous_handler_registry._registry[BACKEND] = create
    if address() in (LOOPBACK, "::1", "localhost"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    host, port = sock.getsockname()[:2]
    try:
        yield f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    finally:
        if sock.fileno() != -1:  # never handed to a store (the launch failed first)
            sock.close()
