"""Property tests: no display name or metadata can change the structure of domain XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.api.validation import check_metadata, check_name
from services.common.errors import InvalidArgument
from services.compute.virt.libvirt.config import (
    METADATA_NS,
    DomainConfig,
    InstanceMetadata,
    domain_xml,
)

# Any text the api could accept, hostile parts included.
hostile = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=300
) | st.sampled_from(["]]>", "</nova:name><devices/>", "&amp;&", "'\"<>", "../../etc/passwd"])


def accepted(check: object, *args: object) -> bool:
    try:
        check(*args)  # type: ignore[operator]
    except InvalidArgument:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(name=hostile, key=hostile, value=hostile)
@example(name="n", key="k", value="a\rb")  # XML would turn the CR into a LF: refused
@example(name="n", key="k", value="tab\tand\nnewline")  # these survive as they are
def test_whatever_the_api_accepts_stays_text_in_the_domain(name: str, key: str, value: str) -> None:
    if not accepted(check_name, "name", name) or not accepted(check_metadata, {key: value}):
        return
    config = DomainConfig(
        virt_type="qemu", name="instance-00000001", uuid="0b9d3a4e-2a8a-4f5e-9b1a-0c2f8b1e7d11",
        memory_mb=64, vcpus=1,
        metadata=InstanceMetadata(name, "m1.tiny", "p", datetime(2026, 1, 1, tzinfo=UTC),
                                  {key: value}),
    )  # fmt: skip
    root = ET.fromstring(domain_xml(config))
    ns = {"n": METADATA_NS}
    assert root.findtext("metadata/n:instance/n:name", namespaces=ns) == name
    prop = root.find("metadata/n:instance/n:properties/n:property", ns)
    assert prop is not None and prop.get("key") == key and (prop.text or "") == value
    assert root.findtext("name") == "instance-00000001" and root.find("devices/disk") is None
