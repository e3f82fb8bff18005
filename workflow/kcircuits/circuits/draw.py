"""Circuit drawings: DOT text always; SVG through Graphviz's `dot` when it is installed, otherwise a
simple built-in layered layout (input at the bottom, one row per layer, logits on top).

Edge colour says the sign of the score (blue supports the clean answer, red opposes it) and width
its magnitude; an edge into a head's query, key or value input is drawn dashed, dotted or solid
with the q/k/v letter as its label.
"""
from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import torch

from ..io import atomic_path
from .graph import Circuit

STYLE = {"q": "dashed", "k": "dotted", "v": "solid", "": "solid"}
DASH = {"dashed": "6,3", "dotted": "2,3", "solid": ""}
NODE_FILL = {"input": "#d9d9d9", "head": "#c6dbef", "mlp": "#c7e9c0", "logits": "#fdd0a2"}  # by NodeName.kind


def _edges(circuit: Circuit, scores: torch.Tensor | None):
    """(parent name, child node name, q/k/v or '', score) for every in-circuit edge."""
    g = circuit.graph
    names = g.node_names
    for u, v in circuit.edge_list():
        qkv = g.parse(g.backward_names[v]).qkv
        yield g.forward_names[u], names[int(g.slot_node[v])], qkv, (float(scores[u, v]) if scores is not None else 0.0)


def _width(score: float, top: float) -> float:
    return 0.5 + 3.5 * abs(score) / top if top > 0 else 1.0


def to_dot(circuit: Circuit, scores: torch.Tensor | None = None, title: str = "") -> str:
    g = circuit.graph
    edges = list(_edges(circuit, scores))
    top = max((abs(e[3]) for e in edges), default=0.0)
    lines = ["digraph circuit {", "  rankdir=BT;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    if title:
        lines.append('  label="%s"; labelloc=t;' % title.replace('"', r'\"'))
    nodes = circuit.nodes
    for i, name in enumerate(g.node_names):
        if nodes[i]:
            lines.append(f'  "{name}" [fillcolor="{NODE_FILL[g.parse(name).kind]}"];')
    for parent, child, qkv, score in edges:
        colour = "#2166ac" if score >= 0 else "#b2182b"
        label = f', label="{qkv}"' if qkv else ""
        lines.append(f'  "{parent}" -> "{child}" [color="{colour}", penwidth={_width(score, top):.2f}, '
                     f'style={STYLE[qkv]}{label}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _builtin_svg(circuit: Circuit, scores: torch.Tensor | None, title: str) -> str:
    """Layered layout without Graphviz: rows bottom-up, nodes spread evenly along each row."""
    g = circuit.graph
    in_graph = [i for i in range(len(g.node_names)) if circuit.nodes[i]]
    rows: dict[int, list[int]] = {}
    for i in in_graph:  # input, then per layer a row of heads and a row for the MLP above it, logits
        node = g.parse(g.node_names[i])
        rows.setdefault(2 * node.layer + (1 if node.kind == "mlp" else 0), []).append(i)
    box_w, box_h, gap_x, gap_y = 64, 24, 16, 56
    width = max([len(r) for r in rows.values()] + [1]) * (box_w + gap_x) + gap_x
    height = (2 * g.n_layers + 3) * gap_y + 40
    pos = {}
    for layer, members in rows.items():
        span = len(members) * (box_w + gap_x) - gap_x
        for j, i in enumerate(members):
            pos[g.node_names[i]] = ((width - span) / 2 + j * (box_w + gap_x) + box_w / 2,
                                    height - 30 - (layer + 2) * gap_y)
    edges = list(_edges(circuit, scores))
    top = max((abs(e[3]) for e in edges), default=0.0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" font-family="Helvetica" '
           f'font-size="11">', f'<text x="8" y="16">{html.escape(title)}</text>']
    for parent, child, qkv, score in edges:
        (x1, y1), (x2, y2) = pos[parent], pos[child]
        dash = DASH[STYLE[qkv]]
        out.append(f'<line x1="{x1:.1f}" y1="{y1 - box_h / 2:.1f}" x2="{x2:.1f}" y2="{y2 + box_h / 2:.1f}" '
                   f'stroke="{"#2166ac" if score >= 0 else "#b2182b"}" stroke-width="{_width(score, top):.2f}" '
                   f'stroke-opacity="0.6"' + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
    for name, (x, y) in pos.items():
        out.append(f'<rect x="{x - box_w / 2:.1f}" y="{y - box_h / 2:.1f}" width="{box_w}" height="{box_h}" rx="5" '
                   f'fill="{NODE_FILL[g.parse(name).kind]}" stroke="#555"/><text x="{x:.1f}" y="{y + 4:.1f}" '
                   f'text-anchor="middle">{html.escape(name)}</text>')
    return "\n".join(out + ["</svg>"]) + "\n"


def to_svg(circuit: Circuit, scores: torch.Tensor | None = None, title: str = "", use_graphviz: bool = True) -> str:
    dot = shutil.which("dot") if use_graphviz else None
    if dot is None:
        return _builtin_svg(circuit, scores, title)
    proc = subprocess.run([dot, "-Tsvg"], input=to_dot(circuit, scores, title), capture_output=True, text=True,
                          check=True)
    return proc.stdout


def write_drawing(circuit: Circuit, path: str | Path, scores: torch.Tensor | None = None, title: str = "") -> None:
    """Write `path` as DOT (.dot / .gv) or SVG (.svg), atomically."""
    suffix = Path(path).suffix
    if suffix in (".dot", ".gv"):
        text = to_dot(circuit, scores, title)
    elif suffix == ".svg":
        text = to_svg(circuit, scores, title)
    else:
        raise ValueError(f"{path}: write .dot, .gv or .svg")
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
