"""Shared fixtures: small phantoms, generated once per session."""

from __future__ import annotations

import pytest

from mri_scoring import phantom

SMALL = (96, 96, 16)


@pytest.fixture(scope="session")
def imnm_small():
    return phantom.make_study("imnm", seed=1, shape=SMALL)


@pytest.fixture(scope="session")
def dm_small():
    return phantom.make_study("dm", seed=2, shape=SMALL)


@pytest.fixture(scope="session")
def normal_small():
    return phantom.make_study("normal", seed=3, shape=SMALL)
