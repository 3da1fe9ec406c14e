"""Counting a PDF's pages from its bytes: real PDFs built in the test (tests.support.pdf)."""

from __future__ import annotations

import base64
import zlib

import pytest

from tests.support import pdf
from tollway.pricing.pdf_pages import pdf_pages


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("pages", [1, 7, 250])
def test_a_flat_page_tree_counts_its_pages(pages: int) -> None:
    assert pdf_pages(_b64(pdf(pages))) == pages


def test_a_page_tree_of_nodes_counts_by_its_roots_count() -> None:
    assert pdf_pages(_b64(pdf(95, fan_out=10))) == 95


@pytest.mark.parametrize("fan_out", [0, 10])
def test_pages_hidden_in_compressed_object_streams_are_counted(fan_out: int) -> None:
    data = pdf(95, fan_out=fan_out, object_streams=True)
    assert b"/Type /Page " not in data  # nothing to see without inflating
    assert pdf_pages(_b64(data)) == 95


def test_a_heavy_single_page_counts_as_one_page() -> None:
    assert pdf_pages(_b64(pdf(1, pad=400_000))) == 1


def test_the_url_safe_alphabet_is_read_too() -> None:
    assert pdf_pages(base64.urlsafe_b64encode(pdf(12, object_streams=True)).decode()) == 12


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.99])
def test_a_truncated_pdf_is_not_counted(cut: float) -> None:
    data = pdf(40, fan_out=8)
    assert pdf_pages(_b64(data[: int(len(data) * cut)])) is None


def test_a_truncated_object_stream_is_not_counted() -> None:
    data = pdf(40, object_streams=True)
    start = data.index(b"stream\n") + len(b"stream\n")
    cut = data[: start + 40] + data[data.index(b"endstream") :]  # its end still says %%EOF
    assert pdf_pages(_b64(cut)) is None


def test_object_streams_it_cannot_read_are_not_counted() -> None:
    data = pdf(40, object_streams=True)
    with_predictor = data.replace(b"/Filter /FlateDecode /Length", b"/DecodeParms <<>> /Length", 1)
    other_filter = data.replace(b"/ObjStm /N", b"/ObjStm /Filter /LZWDecode /N", 1)
    other_filter = other_filter.replace(b"/Filter /FlateDecode /Length", b"/Length", 1)
    assert pdf_pages(_b64(with_predictor)) is None
    chained = data.replace(
        b"/Filter /FlateDecode /Length", b"/Filter [/FlateDecode /AHx] /Length", 1
    )
    assert pdf_pages(_b64(chained)) is None
    in_brackets = data.replace(
        b"/Filter /FlateDecode /Length", b"/Filter [ /FlateDecode ] /Length", 1
    )
    assert pdf_pages(_b64(in_brackets)) == 40
    assert pdf_pages(_b64(other_filter)) is None


def test_an_encrypted_pdf_is_not_counted() -> None:
    data = pdf(3).replace(b"/Root 1 0 R", b"/Root 1 0 R /Encrypt 9 0 R")
    assert pdf_pages(_b64(data)) is None


@pytest.mark.parametrize(
    "data",
    ["", "JVBERi0xLjQK", "not base64 at all!", _b64(b"plain text, not a PDF\n%%EOF")],
)
def test_what_is_not_a_whole_pdf_is_not_counted(data: str) -> None:
    assert pdf_pages(data) is None


def test_an_object_stream_bomb_stops_at_the_inflation_bound() -> None:
    bomb = zlib.compress(b"/Type /Page " * 200_000)  # 2.4 MB inflated, a few KB sent
    data = (
        b"%PDF-1.7\n1 0 obj\n<< /Type /ObjStm /N 1 /First 4 /Filter /FlateDecode >>\nstream\n"
        + bomb
        + b"\nendstream\nendobj\n%%EOF\n"
    )
    assert pdf_pages(_b64(data), inflated_bytes=1_000_000) is None
    assert pdf_pages(_b64(data), inflated_bytes=3_000_000) == 200_000
