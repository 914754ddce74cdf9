from __future__ import annotations

import pytest

from cri.paging import pages


def test_pages_split_and_keep_order() -> None:
    assert list(pages(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(pages(range(4), 2)) == [[0, 1], [2, 3]]
    assert list(pages([], 100)) == []


def test_page_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        list(pages([1], 0))
