"""Which directories an unprivileged server account can pass through."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from replica.drivers.local.accounts import RunAs, private_dir, unsearchable_ancestor
from replica.errors import InfrastructureError

STRANGER = RunAs("stranger", uid=424242, gid=424242)


@pytest.fixture
def open_root():
    root = Path(tempfile.mkdtemp(prefix="replica-accounts-test-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root)


def test_the_first_directory_without_search_permission_for_the_account_is_named(open_root):
    closed = open_root / "closed"
    deep = closed / "a" / "b"
    deep.mkdir(parents=True)
    closed.chmod(0o700)
    assert unsearchable_ancestor(deep / "data", STRANGER) == closed
    closed.chmod(0o701)
    assert unsearchable_ancestor(deep / "data", STRANGER) is None
    assert unsearchable_ancestor(deep / "data", RunAs()) is None  # the harness's own account


def test_a_private_dir_under_an_unreachable_temp_root_is_refused_before_anything_is_made(open_root):
    closed = open_root / "closed"
    within = closed / "replica-x"
    within.mkdir(parents=True)
    closed.chmod(0o700)
    with pytest.raises(InfrastructureError, match=rf"{closed} is not searchable by it \(mode 0700\).*TMPDIR"):
        private_dir(within / "postgres", STRANGER, within=within)
    assert list(within.iterdir()) == []
