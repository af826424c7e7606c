"""The address sets a host keeps for its ports' remote-group rules, one per group however
many ports name it. Not thread-safe: the driver's lock guards it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.common.networking import AddressSet, PortSpec, referenced_groups


def named_by(ports: Iterable[PortSpec]) -> set[str]:
    """The groups whose sets the rendered rules use (ports without security render none)."""
    return referenced_groups(p for p in ports if p.port_security_enabled)


class HostAddressSets:
    def __init__(self) -> None:
        self._sets: dict[str, AddressSet] = {}

    def take(self, address_sets: Iterable[AddressSet]) -> None:
        """The newest copy wins: what arrives replaces what was kept."""
        self._sets.update((s.group_id, s) for s in address_sets)

    def for_render(self, ports: Sequence[PortSpec]) -> dict[str, AddressSet]:
        """The sets these ports name, and forget the rest: a set no port names stops being
        pushed here, so a copy kept would go stale."""
        wanted = named_by(ports)
        self._sets = {g: s for g, s in self._sets.items() if g in wanted}
        return dict(self._sets)

    def changed_members(
        self, address_sets: Sequence[AddressSet], ports: Sequence[PortSpec]
    ) -> tuple[list[AddressSet], int]:
        """Keep those of ``address_sets`` the ports name; return the ones whose members
        differ from the copy kept (what the table needs rewritten) and how many were named.
        A set no port names is ignored: nothing here would match it."""
        wanted = named_by(ports)
        named = [s for s in address_sets if s.group_id in wanted]
        changed = [s for s in named if self._sets.get(s.group_id) != s]
        self.take(named)
        return changed, len(named)
