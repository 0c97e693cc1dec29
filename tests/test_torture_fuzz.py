"""Random bytes into the IDX, Planetoid and safetensors readers: a result or one TicketlabError, never another
exception, and never more than 100 MB allocated (tracemalloc: Python and numpy allocations) for a tiny input."""

import gzip
import pickle
import tracemalloc

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ticketlab.core.files import load_tensors, save_tensors
from ticketlab.core.masks import Masks
from ticketlab.data.idx import read_idx
from ticketlab.data.planetoid import matrix
from ticketlab.errors import TicketlabError

LIMIT = 100 * 2**20
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def bounded(read, path) -> None:
    """`read(path)` returns or raises TicketlabError, allocating at most LIMIT bytes on the way."""
    tracemalloc.start()
    try:
        read(path)
    except TicketlabError as e:
        assert "\n" not in str(e)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < LIMIT, peak


def header(dims: list[int], ndim_byte: int) -> bytes:
    return bytes([0, 0, 8, ndim_byte]) + b"".join(d.to_bytes(4, "big") for d in dims)


SIZE = st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 40), st.just(28))


@FUZZ
@given(dims=st.lists(SIZE, min_size=3, max_size=3), body=st.binary(max_size=2000),
       gz=st.booleans(), noise=st.binary(max_size=40), structured=st.booleans())
def test_idx_reader(tmp_path_factory, dims, body, gz, noise, structured):
    data = header(dims, 3) + body if structured else noise
    path = tmp_path_factory.mktemp("idx") / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    bounded(lambda p: read_idx(p, 3), path)


def planetoid_pickle() -> bytes:
    m = sp.csr_matrix(np.eye(4, dtype=np.float32))
    return pickle.dumps(m, protocol=2)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6), noise=st.binary(max_size=300),
       random=st.booleans())
def test_planetoid_reader(tmp_path_factory, flips, noise, random):
    data = bytearray(planetoid_pickle())
    for at, value in flips:
        data[at % len(data)] = value
    path = tmp_path_factory.mktemp("planetoid") / "ind.cora.x"
    path.write_bytes(noise if random else bytes(data))
    bounded(matrix, path)


def safetensors_bytes(tmp_path) -> bytes:
    import torch

    Masks({"w": torch.rand(5, 7) > 0.5}).save(tmp_path / "m.safetensors")
    save_tensors(tmp_path / "t.safetensors", {"a": torch.zeros(3)}, {"k": "v"})
    return (tmp_path / "m.safetensors").read_bytes()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6), noise=st.binary(max_size=300),
       cut=st.integers(0, 400), random=st.booleans())
def test_safetensors_and_mask_readers(tmp_path_factory, flips, noise, cut, random):
    folder = tmp_path_factory.mktemp("st")
    data = bytearray(safetensors_bytes(folder))
    for at, value in flips:
        data[at % len(data)] = value
    path = folder / "x.safetensors"
    path.write_bytes(noise if random else bytes(data[: max(cut, 8)] if cut < len(data) else data))
    bounded(load_tensors, path)
    bounded(Masks.load, path)
