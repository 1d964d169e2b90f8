"""Draw a traced walk on the testbed's topology: hosts as columns, hops lettered in order.

Plain SVG built with ElementTree (so it is well-formed XML), one column
per host the packet crosses, one box per element, a lettered circle per
hop as the seed's figure letters them, arrows between consecutive hops
(the one between hosts is the tunnel).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from controller.walk import Walk, verdict

COLUMN = 360
ROW = 64
TOP = 80
BOX_W, BOX_H = 250, 42


def _text(parent: ET.Element, x: float, y: float, text: str, size: int = 12, weight: str = "normal",
          anchor: str = "start", fill: str = "black") -> None:
    node = ET.SubElement(parent, "text", x=f"{x:.0f}", y=f"{y:.0f}", fill=fill, attrib={
        "font-family": "DejaVu Sans, sans-serif", "font-size": str(size), "font-weight": weight,
        "text-anchor": anchor})
    node.text = text


def draw(walk: Walk) -> str:
    rows: dict[str, int] = {}
    places = []
    for hop in walk.hops:
        column = walk.hosts.index(hop.host)
        if hop.host not in rows:  # a remote host starts level with the tunnel port that sent to it
            parent_y = places[hop.parent][1] if hop.parent is not None else TOP + 30
            rows[hop.host] = (parent_y - TOP - 30) // ROW
        row = max(rows[hop.host], (places[hop.parent][1] - TOP - 30) // ROW if hop.parent is not None
                  and walk.hops[hop.parent].host == hop.host else 0)
        rows[hop.host] = row + 1
        places.append((20 + column * COLUMN, TOP + 30 + row * ROW))
    width = 40 + len(walk.hosts) * COLUMN
    height = TOP + 60 + max(rows.values(), default=1) * ROW + 40
    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", width=str(width), height=str(height),
                     viewBox=f"0 0 {width} {height}")
    defs = ET.SubElement(svg, "defs")
    marker = ET.SubElement(defs, "marker", id="arrow", markerWidth="10", markerHeight="10", refX="9", refY="3",
                           orient="auto")
    ET.SubElement(marker, "path", d="M0,0 L9,3 L0,6 z", fill="#c0392b")
    ET.SubElement(svg, "rect", x="0", y="0", width=str(width), height=str(height), fill="white")
    _text(svg, 20, 28, f"brtun trace {walk.source}", 14, "bold")
    _text(svg, 20, 46, f"  -> {walk.destination}", 14, "bold")
    _text(svg, 20, 64, f"verdict: {verdict(walk)}", 12)
    for index, host in enumerate(walk.hosts):
        x = 10 + index * COLUMN
        ET.SubElement(svg, "rect", x=str(x), y=str(TOP), width=str(COLUMN - 30), height=str(height - TOP - 20),
                      rx="10", fill="#f4f6f8", stroke="#7f8c8d")
        _text(svg, x + 12, TOP + 20, f"host {host}", 13, "bold")
    for hop, (x, y) in zip(walk.hops, places, strict=True):  # the arrows first, under the boxes
        if hop.parent is not None:
            px, py = places[hop.parent]
            if px == x:  # down the host's column
                points = [(px + 14, py + BOX_H / 2 + 12), (x + 14, y + BOX_H / 2 - 13)]
            else:  # across the underlay, through the gap below the row, so no box is crossed
                gap = py + BOX_H + (ROW - BOX_H) / 2
                points = [(px + BOX_W, py + BOX_H / 2), (px + BOX_W + 12, py + BOX_H / 2), (px + BOX_W + 12, gap),
                          (x - 8, gap), (x - 8, y + BOX_H / 2), (x + 1, y + BOX_H / 2)]
                _text(svg, x - 40, gap - 4, "tunnel", 10, "bold", "middle")
            ET.SubElement(svg, "polyline", points=" ".join(f"{a:.0f},{b:.0f}" for a, b in points), fill="none",
                          stroke="#c0392b", attrib={"stroke-width": "2", "marker-end": "url(#arrow)"})
    for hop, (x, y) in zip(walk.hops, places, strict=True):
        colour = "#fdebd0" if hop.element.startswith(("br-int", "br-tun")) else "#d6eaf8"
        ET.SubElement(svg, "rect", x=str(x + 30), y=str(y), width=str(BOX_W - 30), height=str(BOX_H), rx="6",
                      fill=colour, stroke="#34495e")
        _text(svg, x + 40, y + 17, hop.element[:34], 12, "bold")
        _text(svg, x + 40, y + 33, hop.detail[:40], 9)
        ET.SubElement(svg, "circle", cx=str(x + 14), cy=str(y + BOX_H / 2), r="12", fill="#c0392b")
        _text(svg, x + 14, y + BOX_H / 2 + 5, hop.letter, 12 if len(hop.letter) == 1 else 9, "bold", "middle",
              "white")
    return ET.tostring(svg, encoding="unicode", xml_declaration=True)
