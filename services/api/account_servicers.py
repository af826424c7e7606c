"""The public Keypairs and Quotas services, and the admins' ComputeServices."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.compute_services import ComputeServiceUseCases
from services.api.convert import keypair_to_proto, node_to_proto, quota_to_proto
from services.api.keypairs import KeypairUseCases
from services.api.paging import PageRequest, bound, page_of
from services.api.quotas import QuotaUseCases
from services.api.servicer import Context, Identify
from services.common.generated.novagrpc.v1 import (
    compute_services_pb2,
    compute_services_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    quotas_pb2,
    quotas_pb2_grpc,
)


class KeypairsServicer(keypairs_pb2_grpc.KeypairsServicer):  # type: ignore[misc]
    def __init__(self, keypairs: KeypairUseCases, identify: Identify) -> None:
        self._keypairs = keypairs
        self._identify = identify

    async def ImportKeypair(
        self, request: keypairs_pb2.ImportKeypairRequest, context: Context
    ) -> keypairs_pb2.Keypair:
        caller = await self._identify(context)
        keypair = await self._keypairs.import_keypair(caller, request.name, request.public_key)
        return keypair_to_proto(keypair)

    async def GetKeypair(
        self, request: keypairs_pb2.GetKeypairRequest, context: Context
    ) -> keypairs_pb2.Keypair:
        caller = await self._identify(context)
        return keypair_to_proto(await self._keypairs.get(caller, request.name))

    async def ListKeypairs(
        self, request: keypairs_pb2.ListKeypairsRequest, context: Context
    ) -> keypairs_pb2.ListKeypairsResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._keypairs.list_keypairs(caller),
            PageRequest(request.page_size, request.page_token),
            key=lambda k: (k.name,),
            bound_to=bound("ListKeypairs", caller),
        )
        return keypairs_pb2.ListKeypairsResponse(
            keypairs=[keypair_to_proto(k) for k in page], next_page_token=next_token
        )

    async def DeleteKeypair(
        self, request: keypairs_pb2.DeleteKeypairRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._keypairs.delete(await self._identify(context), request.name)
        return empty_pb2.Empty()


class QuotasServicer(quotas_pb2_grpc.QuotasServicer):  # type: ignore[misc]
    def __init__(self, quotas: QuotaUseCases, identify: Identify) -> None:
        self._quotas = quotas
        self._identify = identify

    async def GetQuota(
        self, request: quotas_pb2.GetQuotaRequest, context: Context
    ) -> quotas_pb2.QuotaSet:
        caller = await self._identify(context)
        return quota_to_proto(await self._quotas.get(caller, request.project_id))

    async def SetQuota(
        self, request: quotas_pb2.SetQuotaRequest, context: Context
    ) -> quotas_pb2.QuotaSet:
        caller = await self._identify(context)
        new = {
            name: int(getattr(request, name))
            for name in ("instances", "cores", "ram")
            if request.HasField(name)
        }
        return quota_to_proto(await self._quotas.set(caller, request.project_id, new))


class ComputeServicesServicer(compute_services_pb2_grpc.ComputeServicesServicer):  # type: ignore[misc]
    def __init__(self, services: ComputeServiceUseCases, identify: Identify) -> None:
        self._services = services
        self._identify = identify

    async def ListComputeServices(
        self, request: compute_services_pb2.ListComputeServicesRequest, context: Context
    ) -> compute_services_pb2.ListComputeServicesResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._services.list_services(caller),
            PageRequest(request.page_size, request.page_token),
            key=lambda v: (v.state.host,),
            bound_to=bound("ListComputeServices", caller),
        )
        return compute_services_pb2.ListComputeServicesResponse(
            services=[node_to_proto(v) for v in page], next_page_token=next_token
        )

    async def SetComputeServiceStatus(
        self, request: compute_services_pb2.SetComputeServiceStatusRequest, context: Context
    ) -> compute_services_pb2.ComputeService:
        view = await self._services.set_status(
            await self._identify(context), request.host, enabled=request.enabled,
            reason=request.disabled_reason,
        )  # fmt: skip
        return node_to_proto(view)
