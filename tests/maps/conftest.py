"""Map fixtures: the service's own (the sample twin behind the real app), under map names."""

import pytest

from tests.maps.browser import Chromium
from tests.service.conftest import (  # noqa: F401
    api_keys,
    client,
    live_url,
)


@pytest.fixture(scope="module")
def maps_client(client):  # noqa: F811
    return client


@pytest.fixture(scope="module")
def maps_live_url(live_url):  # noqa: F811
    return live_url


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a module's pages."""
    chromium = Chromium()
    yield chromium
    chromium.close()
