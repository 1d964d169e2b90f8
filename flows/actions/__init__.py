"""OpenFlow actions, each declared once: its text, its bytes, and what it does to a packet.

An action class is the one place that knows that action: how `ovs-ofctl`
prints it (`render`), how Open vSwitch's own flow parser hands it over
(`from_text`), its OpenFlow 1.3 / Nicira bytes both ways (`encode`,
`decode`), and its effect on a simulated packet (`execute`).  Declaring the
class registers it under its text keys and its wire type (flows.actions.base),
so the text parser (flows.textparse), the wire codec (flows.wire) and the
simulator (flows.simulator) dispatch to it and know no action themselves:
a new action is one class in one of these modules.

Only the actions br-tun uses are modelled; anything else read back from a
switch (a foreign flow) is kept as `RawAction` text so it can be shown and
compared, never rebuilt.

May import: flows.ofp, flows.fields, and Open vSwitch's flow parser's value types.
"""

from flows.actions.base import (
    Action,
    CannotSimulate,
    Execution,
    Learned,
    Packet,
    RawAction,
    decode,
    encode_all,
    encoded,
    encoded_both,
    from_text,
    ovs_value,
)
from flows.actions.learn import Learn, LearnLoad, LearnMatch, LearnOutput, LearnSpec
from flows.actions.nicira import Load, Move
from flows.actions.openflow import Output, PopVlan, PushVlan, SetField

__all__ = [
    "Action",
    "CannotSimulate",
    "Execution",
    "Learn",
    "LearnLoad",
    "LearnMatch",
    "LearnOutput",
    "LearnSpec",
    "Learned",
    "Load",
    "Move",
    "Output",
    "Packet",
    "PopVlan",
    "PushVlan",
    "RawAction",
    "SetField",
    "decode",
    "encode_all",
    "encoded",
    "encoded_both",
    "from_text",
    "ovs_value",
]
