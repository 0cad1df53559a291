"""Fixtures for the C and C++ interop tests.

ferrows is installed into a temporary prefix with ``ffi-c/install.sh`` (from the library in
``target/release``, or ``FERROWS_LIB_DIR``), and the examples in ``examples/c`` are built
from that prefix twice: with ``make`` and pkg-config, and with CMake's ``find_package``.
The C programs then talk to Python peers on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ferrows.sync
import pytest
import trustme
import websockets.sync.server
from interop_support import (
    EXAMPLES,
    HOST,
    JOIN_TIMEOUT,
    ROOT,
    TOOLS,
    PythonServer,
    ServerProcess,
    TlsFiles,
    ferrows_echo,
    pkg_config_env,
    run,
    websockets_echo,
)


@pytest.fixture(scope="session")

@pytest.fixture(scope="session")

@pytest.fixture(scope="session")

@pytest.fixture(scope="session")

@pytest.fixture(params=["make", "cmake"])

@pytest.fixture

@pytest.fixture

@pytest.fixture

@pytest.fixture(scope="session")
