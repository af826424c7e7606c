"""Generate Python code (messages, type stubs, gRPC stubs) for every .proto under protos/.

protoc writes imports relative to the proto root (``from novagrpc.v1 import x_pb2``);
the generated tree lives inside ``services.common.generated``, so those imports are
rewritten to absolute ones. The descriptor file names stay ``novagrpc/...`` so that
server reflection shows the packages users expect.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OUT = ROOT / "services" / "common" / "generated"
PACKAGE = "services.common.generated"


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={OUT}",
        f"--pyi_out={OUT}",
        f"--grpc_python_out={OUT}",
        *protos,
    ]
    if protoc.main(args) != 0:
        print("protoc failed", file=sys.stderr)
        return 1
    import_re = re.compile(r"^from (novagrpc[\w.]*) import", re.MULTILINE)
    for path in OUT.rglob("*.py*"):
        text = path.read_text()
        path.write_text(import_re.sub(rf"from {PACKAGE}.\1 import", text))
    for directory in [OUT, *(p for p in OUT.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    print(f"generated {len(protos)} protos into {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
