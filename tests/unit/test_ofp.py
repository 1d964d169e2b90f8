"""flows.ofp and the field declarations hold OpenFlow's numbers: checked against os-ken's tables."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import nicira_ext, ofproto_common
from os_ken.ofproto import ofproto_v1_3 as osken

from flows import fields, ofp


@pytest.mark.parametrize("name", [
    "OFP_VERSION", "OFPT_EXPERIMENTER", "OFPT_FLOW_MOD", "OFPFC_ADD", "OFPFC_MODIFY_STRICT", "OFPFC_DELETE_STRICT",
    "OFP_NO_BUFFER", "OFPG_ANY", "OFPIT_GOTO_TABLE", "OFPIT_APPLY_ACTIONS", "OFPAT_OUTPUT", "OFPAT_PUSH_VLAN",
    "OFPAT_POP_VLAN", "OFPAT_SET_FIELD", "OFPAT_EXPERIMENTER", "ONF_ET_BUNDLE_ADD_MESSAGE", "OFPMT_OXM",
])
def test_each_openflow_number_is_os_kens(name: str) -> None:
    assert getattr(ofp, name) == getattr(osken, name)


def test_the_nicira_and_onf_numbers_are_os_kens() -> None:
    assert ofp.NX_VENDOR_ID == ofproto_common.NX_EXPERIMENTER_ID
    assert (ofp.NXAST_REG_MOVE, ofp.NXAST_REG_LOAD, ofp.NXAST_LEARN) == (
        nicira_ext.NXAST_REG_MOVE, nicira_ext.NXAST_REG_LOAD, nicira_ext.NXAST_LEARN)
    assert ofp.ONF_EXPERIMENTER_ID == ofproto_common.ONF_EXPERIMENTER_ID


@pytest.mark.parametrize("port", ["OFPP_IN_PORT", "OFPP_TABLE", "OFPP_NORMAL", "OFPP_FLOOD", "OFPP_ALL",
                                  "OFPP_CONTROLLER", "OFPP_LOCAL", "OFPP_ANY"])
def test_each_reserved_port_is_os_kens(port: str) -> None:
    assert getattr(fields, port) == getattr(osken, port)


def osken_header(name: str) -> int:
    number = osken.oxm_from_user_header(name)
    buffer = bytearray()
    osken.oxm_serialize_header(number, buffer, 0)
    return struct.unpack("!I", buffer)[0]


def every_header() -> list[ofp.Header]:
    return [header for field in (*fields.FIELDS, fields.VLAN_VID)
            for header in (field.oxm, field.oxm_ipv6, field.nxm) if header is not None]


def osken_name(header: ofp.Header) -> str:
    """os-ken names an OXM field as the specification does, and Nicira's copy as `<oxm name>_nxm`."""
    if header.oxm_class == ofp.OXM_OF_BASIC or header.name == "NXM_OF_VLAN_TCI":
        return header.name if header.name != "NXM_OF_VLAN_TCI" else "vlan_tci"
    oxm = fields.BY_HEADER[header.number].oxm
    assert oxm is not None
    return f"{oxm.name}_nxm"


@pytest.mark.parametrize("header", every_header(), ids=lambda header: header.name)
def test_each_declared_header_is_the_one_os_ken_writes_for_its_name(header: ofp.Header) -> None:
    assert header.number == osken_header(osken_name(header))


def test_headers_name_one_field_each_and_sort_as_os_ken_sorts_them() -> None:
    headers = every_header()
    assert len({header.number for header in headers}) == len(headers) == len(fields.BY_HEADER)
    for header in headers:
        number = osken.oxm_from_user_header(osken_name(header))
        assert header.order == (number[0] if isinstance(number, tuple) else number), header.name
