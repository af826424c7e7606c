"""Per-project caps on calls in flight and open streams."""

from __future__ import annotations

import pytest

from services.api.admission import Admission
from services.common.errors import RateLimited

pytestmark = pytest.mark.timeout(5)


def test_a_project_at_its_cap_is_refused_until_a_call_ends() -> None:
    admission = Admission(calls_per_project=2, streams_per_project=1)
    first = admission.enter("p")
    admission.enter("p")
    with pytest.raises(RateLimited, match="calls in flight"):
        admission.enter("p")
    admission.enter("q")  # another project has its own count
    admission.enter("p", stream=True)  # streams are counted apart
    with pytest.raises(RateLimited, match="open streams"):
        admission.enter("p", stream=True)
    first()
    first()  # ending twice frees one slot only
    admission.enter("p")
    with pytest.raises(RateLimited):
        admission.enter("p")
    assert admission.in_flight("p") == 2


def test_zero_means_no_cap() -> None:
    admission = Admission(calls_per_project=0, streams_per_project=0)
    releases = [admission.enter("p") for _ in range(1000)]
    for release in releases:
        release()
    assert admission.in_flight("p") == 0
