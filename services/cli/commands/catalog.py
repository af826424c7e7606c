"""novactl flavor ... and image ...: the catalogue."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from services.cli import lookup
from services.cli.client import Client
from services.cli.commands.servers import pairs
from services.cli.completers import complete
from services.cli.errors import CliError
from services.cli.output import emit, show_many, to_dict
from services.cli.paging import every
from services.common.domain import DISK_FORMATS
from services.common.generated.novagrpc.v1 import catalog_pb2

FLAVOR_COLUMNS = ("id", "name", "vcpus", "ram", "disk")
IMAGE_COLUMNS = ("id", "name", "disk_format", "status", "size", "owner")


def _name(args: argparse.Namespace) -> str:
    name = args.name_arg or args.name
    if not name:
        raise CliError("a name is required (flavor create NAME --vcpus N --ram MIB)")
    return str(name)


def _flavor_create(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    flavor = client.call(
        client.flavors.CreateFlavor,
        catalog_pb2.CreateFlavorRequest(
            name=_name(args),
            id=args.id or "",
            vcpus=args.vcpus,
            ram=args.ram,
            disk=args.disk,
        ),
    )
    emit(to_dict(flavor), args.view, out)
    return 0


def _flavor_list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    found = every(
        client, client.flavors.ListFlavors, catalog_pb2.ListFlavorsRequest(), items="flavors"
    )
    show_many([to_dict(f) for f in found], FLAVOR_COLUMNS, args.view, out=out)
    return 0


def _flavor_show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    flavor_id = lookup.flavor_id(client, args.flavor)
    flavor = client.call(client.flavors.GetFlavor, catalog_pb2.GetFlavorRequest(id=flavor_id))
    emit(to_dict(flavor), args.view, out)
    return 0


def _flavor_delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for ref in args.flavors:
        flavor_id = lookup.flavor_id(client, ref)
        client.call(client.flavors.DeleteFlavor, catalog_pb2.DeleteFlavorRequest(id=flavor_id))
        out.write(f"flavor {flavor_id} deleted\n")
    return 0


def _image_register(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    properties = pairs("--property", args.property)
    image = client.call(
        client.images.RegisterImage,
        catalog_pb2.RegisterImageRequest(
            name=args.name, file=args.file, disk_format=args.disk_format,
            initrd_file=args.initrd or "", kernel_cmdline=args.cmdline or "",
            properties=properties,
        ),
    )  # fmt: skip
    emit(to_dict(image), args.view, out)
    return 0


def _image_list(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    found = every(client, client.images.ListImages, catalog_pb2.ListImagesRequest(), items="images")
    show_many([to_dict(i) for i in found], IMAGE_COLUMNS, args.view, out=out)
    return 0


def _image_show(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    image_id = lookup.image_id(client, args.image)
    image = client.call(client.images.GetImage, catalog_pb2.GetImageRequest(id=image_id))
    emit(to_dict(image), args.view, out)
    return 0


def _image_delete(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    for ref in args.images:
        image_id = lookup.image_id(client, ref)
        client.call(client.images.DeleteImage, catalog_pb2.DeleteImageRequest(id=image_id))
        out.write(f"image {image_id} deleted\n")
    return 0


def register(commands: Any) -> None:
    flavor = commands.add_parser("flavor", help="flavors").add_subparsers(
        dest="flavor_action", required=True, metavar="ACTION"
    )
    create = flavor.add_parser("create", help="create a flavor (admin)")
    create.add_argument("name_arg", nargs="?", metavar="NAME")
    create.add_argument("--name", help=argparse.SUPPRESS)  # before openstackclient's NAME
    create.add_argument("--id")
    create.add_argument("--vcpus", type=int, required=True)
    create.add_argument("--ram", type=int, required=True, help="MiB")
    create.add_argument("--disk", type=int, default=0, help="GiB")
    create.set_defaults(func=_flavor_create)
    flavor.add_parser("list", help="list flavors").set_defaults(func=_flavor_list)
    show = flavor.add_parser("show", help="show a flavor")
    complete(show.add_argument("flavor", help="name or id"), "flavor")
    show.set_defaults(func=_flavor_show)
    delete = flavor.add_parser("delete", help="delete flavors (admin)")
    complete(delete.add_argument("flavors", nargs="+", metavar="FLAVOR", help="names or ids"),
             "flavor")  # fmt: skip
    delete.set_defaults(func=_flavor_delete)

    image = commands.add_parser("image", help="images").add_subparsers(
        dest="image_action", required=True, metavar="ACTION"
    )
    register_image = image.add_parser("register", help="register a file of the image store")
    register_image.add_argument("--name", required=True)
    register_image.add_argument("--file", required=True, help="path inside the image store")
    register_image.add_argument("--disk-format", default="qcow2",
                                choices=DISK_FORMATS)  # fmt: skip
    register_image.add_argument("--initrd", help="kernel images: initrd in the image store")
    register_image.add_argument("--cmdline", help="kernel images: kernel command line")
    register_image.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
    register_image.set_defaults(func=_image_register)
    image.add_parser("list", help="list images").set_defaults(func=_image_list)
    show_image = image.add_parser("show", help="show an image")
    complete(show_image.add_argument("image", help="name or id"), "image")
    show_image.set_defaults(func=_image_show)
    delete_image = image.add_parser("delete", help="delete images")
    complete(delete_image.add_argument("images", nargs="+", metavar="IMAGE",
                                       help="names or ids"), "image")  # fmt: skip
    delete_image.set_defaults(func=_image_delete)
