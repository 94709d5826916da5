"""The fuzz suite writes its outcome tallies at the end of the session (see fuzz_helpers)."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _fuzz_report():
    yield
    from fuzz_helpers import write_report

    write_report()
