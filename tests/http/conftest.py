"""One `ledger serve` per test module and backend, where the module's tests do not interfere."""

from collections.abc import Iterator

import pytest

from tests.http.server import BACKENDS, Server, create_keys, fresh_store, serving


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on a fresh store with a key of each role."""
    folder = tmp_path_factory.mktemp("http")
    with fresh_store(request.param, folder) as url:
        keys = create_keys(url)
        with serving(url, folder) as running:
            running.keys = keys
            yield running
