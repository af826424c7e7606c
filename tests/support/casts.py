"""A BuildCaster that sends nothing: for tests of the create use case alone."""

from __future__ import annotations

from collections.abc import Sequence


class NoCasts:
    def cast(
        self,
        instance_uuids: Sequence[str],
        *,
        reservation_id: str,
        request_id: str,
        admin_password: str = "",
    ) -> None:
        pass
