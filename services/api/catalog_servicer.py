"""The public Flavors and Images services."""

from __future__ import annotations

from google.protobuf import empty_pb2

from services.api.catalog import FlavorUseCases, ImageUseCases
from services.api.convert import flavor_to_proto, image_to_proto
from services.api.paging import PageRequest, bound, page_of
from services.api.servicer import Context, Identify
from services.common.generated.novagrpc.v1 import catalog_pb2, catalog_pb2_grpc


class FlavorsServicer(catalog_pb2_grpc.FlavorsServicer):  # type: ignore[misc]
    def __init__(self, flavors: FlavorUseCases, identify: Identify) -> None:
        self._flavors = flavors
        self._identify = identify

    async def CreateFlavor(
        self, request: catalog_pb2.CreateFlavorRequest, context: Context
    ) -> catalog_pb2.Flavor:
        caller = await self._identify(context)
        flavor = await self._flavors.create(
            caller, name=request.name, flavor_id=request.id, vcpus=request.vcpus,
            ram=request.ram, disk=request.disk,
        )  # fmt: skip
        return flavor_to_proto(flavor)

    async def GetFlavor(
        self, request: catalog_pb2.GetFlavorRequest, context: Context
    ) -> catalog_pb2.Flavor:
        await self._identify(context)
        return flavor_to_proto(await self._flavors.get(request.id))

    async def ListFlavors(
        self, request: catalog_pb2.ListFlavorsRequest, context: Context
    ) -> catalog_pb2.ListFlavorsResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._flavors.list_flavors(),
            PageRequest(request.page_size, request.page_token),
            key=lambda f: (f.memory_mb, f.id),
            bound_to=bound("ListFlavors", caller),
        )
        return catalog_pb2.ListFlavorsResponse(
            flavors=[flavor_to_proto(f) for f in page], next_page_token=next_token
        )

    async def DeleteFlavor(
        self, request: catalog_pb2.DeleteFlavorRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._flavors.delete(await self._identify(context), request.id)
        return empty_pb2.Empty()


class ImagesServicer(catalog_pb2_grpc.ImagesServicer):  # type: ignore[misc]
    def __init__(self, images: ImageUseCases, identify: Identify) -> None:
        self._images = images
        self._identify = identify

    async def RegisterImage(
        self, request: catalog_pb2.RegisterImageRequest, context: Context
    ) -> catalog_pb2.Image:
        caller = await self._identify(context)
        image = await self._images.register(
            caller, name=request.name, file=request.file, disk_format=request.disk_format,
            initrd_file=request.initrd_file, kernel_cmdline=request.kernel_cmdline,
            properties=dict(request.properties),
        )  # fmt: skip
        return image_to_proto(image)

    async def GetImage(
        self, request: catalog_pb2.GetImageRequest, context: Context
    ) -> catalog_pb2.Image:
        await self._identify(context)
        return image_to_proto(await self._images.get(request.id))

    async def ListImages(
        self, request: catalog_pb2.ListImagesRequest, context: Context
    ) -> catalog_pb2.ListImagesResponse:
        caller = await self._identify(context)
        page, next_token = page_of(
            await self._images.list_images(),
            PageRequest(request.page_size, request.page_token),
            key=lambda i: (i.name, i.id),
            bound_to=bound("ListImages", caller),
        )
        return catalog_pb2.ListImagesResponse(
            images=[image_to_proto(i) for i in page], next_page_token=next_token
        )

    async def DeleteImage(
        self, request: catalog_pb2.DeleteImageRequest, context: Context
    ) -> empty_pb2.Empty:
        await self._images.delete(await self._identify(context), request.id)
        return empty_pb2.Empty()
