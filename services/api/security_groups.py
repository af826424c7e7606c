"""Security groups of a project (Neutron's): create, get, list, delete; their rules; Nova's
addSecurityGroup / removeSecurityGroup on a server; and the groups a new server asks for,
resolved in the create's own transaction. Every change that alters what some port allows is
announced after its commit through ``RulesChanged``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.api import validation
from services.api.context import RequestContext
from services.api.security_group_rules import CreateRuleCommand, check_rule
from services.common.domain import utcnow
from services.common.errors import AlreadyExists, NotFound, WrongState
from services.common.records import DEFAULT_SECURITY_GROUP_NAME, GroupRule, NewRule, SecurityGroup
from services.common.stores import SecurityGroupStore, UnitOfWork

DESCRIPTION_MAX = 255


class RulesChanged(Protocol):
    """Told, after the commit, which groups changed (rules or members), so that the rules of
    every affected port can be rendered again (``SecurityGroupStore.instances_affected_by_groups``).
    ``instance_uuids`` names servers affected beyond the groups' members now (a server just
    taken out of a group). Must neither block nor raise: the change is committed already."""

    def groups_changed(
        self, group_ids: Sequence[str], *, instance_uuids: Sequence[str] = ()
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class CreateGroupCommand:
    name: str
    description: str = ""


def resolve_group(
    store: SecurityGroupStore, ref: str, context: RequestContext, *, field: str, lock: bool = False
) -> SecurityGroup:
    """A group of the caller's project by id or name; admins may also name any project's
    group by id. Another project's group is NOT_FOUND (its existence is not revealed)."""
    found = store.find(ref, project_id=context.project_id, lock=lock)
    if not found and context.is_admin:
        found = [g for g in store.find(ref, project_id=None, lock=lock)
                 if g.id == ref]  # fmt: skip
    if not found:
        raise NotFound("security group", ref, field=field)
    return found[0]


class SecurityGroupsTx(Protocol):
    @property
    def security_groups(self) -> SecurityGroupStore: ...


class SecurityGroupUseCases:
    def __init__(self, uow: UnitOfWork[SecurityGroupsTx], notifier: RulesChanged) -> None:
        self._uow = uow
        self._notifier = notifier
        # Projects known to have their default group (it can never be deleted).
        self._with_default: set[str] = set()

    async def _ensure_default(self, project_id: str) -> None:
        """Neutron makes a project's default group on its first security-group call."""
        if project_id in self._with_default:
            return
        found = await self._uow.read(
            lambda tx: tx.security_groups.find(DEFAULT_SECURITY_GROUP_NAME, project_id=project_id)
        )
        if not found:
            await self._uow.write(
                lambda tx: tx.security_groups.ensure_default(project_id, utcnow())
            )
        self._with_default.add(project_id)

    async def create(self, context: RequestContext, command: CreateGroupCommand) -> SecurityGroup:
        name = validation.check_name("name", command.name)
        description = (
            validation.check_name("description", command.description, max_length=DESCRIPTION_MAX)
            if command.description
            else ""
        )
        await self._ensure_default(context.project_id)

        def work(tx: SecurityGroupsTx) -> SecurityGroup:
            made = tx.security_groups.create(
                project_id=context.project_id, name=name, description=description, now=utcnow()
            )
            if made is None:
                raise AlreadyExists(f"name: a security group {name!r} exists already", field="name")
            return made

        return await self._uow.write(work)

    async def get(self, context: RequestContext, ref: str) -> SecurityGroup:
        ref = validation.check_ref("id", ref)
        await self._ensure_default(context.project_id)
        return await self._uow.read(
            lambda tx: resolve_group(tx.security_groups, ref, context, field="id")
        )

    async def list_groups(self, context: RequestContext) -> list[SecurityGroup]:
        await self._ensure_default(context.project_id)
        return await self._uow.read(
            lambda tx: tx.security_groups.list_groups(project_id=context.scope)
        )

    async def delete(self, context: RequestContext, ref: str) -> None:
        ref = validation.check_ref("id", ref)

        def work(tx: SecurityGroupsTx) -> None:
            group = resolve_group(tx.security_groups, ref, context, field="id")
            if group.name == DEFAULT_SECURITY_GROUP_NAME:
                raise WrongState("id: the default security group cannot be deleted", field="id")
            if not tx.security_groups.lock_for_delete(group.id):
                raise NotFound("security group", ref, field="id")
            in_use = tx.security_groups.servers_using(group.id)
            if in_use:
                raise WrongState(
                    f"id: security group {group.name!r} is used by {in_use} server(s)", field="id"
                )
            referring = tx.security_groups.groups_referring_to(group.id)
            if referring:
                raise WrongState(
                    f"id: security group {group.name!r} is the remote group of rules of "
                    f"{', '.join(map(repr, referring))}; delete those rules first",
                    field="id",
                )
            tx.security_groups.delete(group.id)

        await self._uow.write(work)

    async def create_rule(self, context: RequestContext, command: CreateRuleCommand) -> GroupRule:
        group_ref = validation.check_ref("security_group_id", command.security_group)
        valid = check_rule(command)
        await self._ensure_default(context.project_id)

        def work(tx: SecurityGroupsTx) -> GroupRule:
            group = resolve_group(tx.security_groups, group_ref, context, field="security_group_id",
                                  lock=True)  # fmt: skip
            remote_group_id = None
            if valid.remote_group is not None:
                # Same project as the rule's group, whoever asks.
                owner = RequestContext(group.project_id, context.request_id)
                remote = resolve_group(tx.security_groups, valid.remote_group, owner,
                                       field="remote_group_id", lock=True)  # fmt: skip
                remote_group_id = remote.id
            new = NewRule(
                group_id=group.id, direction=valid.direction, protocol=valid.protocol,
                port_min=valid.port_min, port_max=valid.port_max, remote_cidr=valid.remote_cidr,
                remote_group_id=remote_group_id,
            )  # fmt: skip
            existing = tx.security_groups.same_rule(new)
            if existing is not None:
                raise AlreadyExists(
                    f"security group {group.name!r} has this rule already: {existing.id}"
                )
            return tx.security_groups.insert_rule(new, utcnow())

        rule = await self._uow.write(work)
        self._notifier.groups_changed([rule.group_id])
        return rule

    async def delete_rule(self, context: RequestContext, rule_id: str) -> None:
        rule_id = validation.check_ref("id", rule_id)

        def work(tx: SecurityGroupsTx) -> str:
            rule = tx.security_groups.get_rule(rule_id)
            group = None if rule is None else tx.security_groups.get_group(rule.group_id)
            if rule is None or group is None or not _visible(group, context):
                raise NotFound("security group rule", rule_id, field="id")
            tx.security_groups.delete_rule(rule_id)
            return rule.group_id

        group_id = await self._uow.write(work)
        self._notifier.groups_changed([group_id])

    async def add_to_server(self, context: RequestContext, server_id: str, ref: str) -> None:
        """Nova's addSecurityGroup: the group (of the server's project) applies to every port
        of the server from now on."""
        server_id = validation.check_uuid_ref("server_id", server_id)
        ref = validation.check_ref("security_group", ref)

        def work(tx: SecurityGroupsTx) -> str:
            project_id = _lock_server(tx.security_groups, server_id, context)
            if ref == DEFAULT_SECURITY_GROUP_NAME:
                tx.security_groups.ensure_default(project_id, utcnow())
            owner = RequestContext(project_id, context.request_id)
            group = resolve_group(tx.security_groups, ref, owner, field="security_group", lock=True)
            if group.id in tx.security_groups.group_ids_of(server_id):
                raise AlreadyExists(
                    f"security_group: server {server_id} has security group {group.name!r} already",
                    field="security_group",
                )
            tx.security_groups.add_memberships([(server_id, group.id)])
            tx.security_groups.set_shown_names(server_id, utcnow())
            return group.id

        group_id = await self._uow.write(work)
        self._notifier.groups_changed([group_id])

    async def remove_from_server(self, context: RequestContext, server_id: str, ref: str) -> None:
        """Nova's removeSecurityGroup; a server may be left with no group (it then allows
        nothing in and nothing out, as Neutron's port with port security and no group)."""
        server_id = validation.check_uuid_ref("server_id", server_id)
        ref = validation.check_ref("security_group", ref)

        def work(tx: SecurityGroupsTx) -> str:
            project_id = _lock_server(tx.security_groups, server_id, context)
            owner = RequestContext(project_id, context.request_id)
            group = resolve_group(tx.security_groups, ref, owner, field="security_group")
            if not tx.security_groups.remove_membership(server_id, group.id):
                raise WrongState(
                    f"security_group: server {server_id} does not have security group "
                    f"{group.name!r}",
                    field="security_group",
                )
            tx.security_groups.set_shown_names(server_id, utcnow())
            return group.id

        group_id = await self._uow.write(work)
        self._notifier.groups_changed([group_id], instance_uuids=[server_id])


def _visible(group: SecurityGroup, context: RequestContext) -> bool:
    return context.is_admin or group.project_id == context.project_id


def _lock_server(store: SecurityGroupStore, server_id: str, context: RequestContext) -> str:
    """The live server's project; its row stays locked (PostgreSQL) until commit so that a
    concurrent delete, which releases its memberships, runs wholly before or after."""
    project_id = store.lock_server(server_id, project_id=context.scope)
    if project_id is None:
        raise NotFound("server", server_id, field="server_id")
    return project_id


class SecurityGroupResolver:
    """The groups of one batch of creates, in its transaction: each read (and share-locked,
    on PostgreSQL, so a concurrent delete waits for the create) once per batch."""

    def __init__(self, store: SecurityGroupStore) -> None:
        self._store = store
        self._groups: dict[tuple[str, str], SecurityGroup] = {}
        self._memberships: list[tuple[str, str]] = []

    def resolve(self, refs: Sequence[str], context: RequestContext) -> list[SecurityGroup]:
        """The groups (each once) a new server of the caller's project gets; NOT_FOUND names
        the field ``security_groups``."""
        found: dict[str, SecurityGroup] = {}
        for ref in refs:
            group = self._group(ref, context.project_id)
            found.setdefault(group.id, group)
        return list(found.values())

    def _group(self, ref: str, project_id: str) -> SecurityGroup:
        key = (project_id, ref)
        if key not in self._groups:
            if ref == DEFAULT_SECURITY_GROUP_NAME:
                group = self._store.ensure_default(project_id, utcnow())
            else:
                matches = self._store.find(ref, project_id=project_id, lock=True)
                if not matches:
                    raise NotFound("security group", ref, field="security_groups")
                group = matches[0]
            self._groups[key] = group
        return self._groups[key]

    def keep(self, instance_uuids: Sequence[str], groups: Sequence[SecurityGroup]) -> None:
        """These accepted servers get these groups (stored by ``insert``)."""
        self._memberships.extend((u, g.id) for u in instance_uuids for g in groups)

    def insert(self) -> None:
        self._store.add_memberships(self._memberships)
