"""A picture of a topology: Graphviz DOT with one cluster per domain, rendered by `dot`.

Drawn from the plan, so it shows what `up` builds (gateways, switches, addresses, shaped
links) and needs no running testbed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .plan import Plan


class GraphError(RuntimeError):
    pass


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape_label(shape) -> str:
    parts = []
    if shape.delay:
        parts.append(f"{shape.delay:g} ms" + (f" ±{shape.jitter:g}" if shape.jitter else ""))
    if shape.loss:
        parts.append(f"{shape.loss:g}% loss")
    if shape.bandwidth:
        parts.append(f"{shape.bandwidth:g} Mbit/s")
    return ", ".join(parts)


def to_dot(plan: Plan) -> str:
    lines = [f"graph {_q(plan.topology.name)} {{", "  graph [fontname=Helvetica, compound=true];",
             "  node [fontname=Helvetica, fontsize=10]; edge [fontname=Helvetica, fontsize=9];"]  # fmt: skip
    for domain in plan.topology.domains:
        lines.append(f"  subgraph {_q('cluster_' + domain)} {{")
        lines.append(f"    label={_q(domain)}; style=rounded; color=gray40;")
        for sw in plan.switches:
            if sw.domain == domain:
                lines.append(f"    {_q(sw.name)} [shape=box, style=filled, fillcolor=lightblue, "
                             f"label={_q(f'{sw.network}: {sw.subnet}')}];")  # fmt: skip
        for host in plan.hosts.values():
            if host.domain != domain:
                continue
            procs = "\\n".join(f"{p.kind}: {p.name}" for p in host.processes)
            label = host.name + ("\\n" + procs if procs else "")
            style = "shape=octagon, style=filled, fillcolor=khaki" if host.role == "gateway" else "shape=ellipse"
            lines.append(f"    {_q(host.name)} [{style}, label=\"{label}\"];")
        lines.append("  }")
    for host in plan.hosts.values():
        for intf in host.interfaces:
            if intf.switch is not None:
                label = f"{intf.name} {intf.address.ip}"
                extra = _shape_label(intf.shape)
                label += f"\\n{extra}" if extra else ""
                lines.append(f"  {_q(host.name)} -- {_q(intf.switch)} [label=\"{label}\"];")
    for gw_a, if_a, gw_b, _, spec in plan.domain_links:
        shape = plan.hosts[gw_a].intf(if_a).shape
        lines.append(f"  {_q(gw_a)} -- {_q(gw_b)} [penwidth=2, color=firebrick, "
                     f"label=\"{spec.between[0]}–{spec.between[1]}\\n{_shape_label(shape)}\"];")  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(plan: Plan, output: Path) -> Path:
    """Write `output` (.dot, .svg or .png)."""
    dot = to_dot(plan)
    fmt = output.suffix.lstrip(".").lower()
    if fmt == "dot":
        output.write_text(dot)
        return output
    if fmt not in ("svg", "png", "pdf"):
        raise GraphError(f"{output}: use a .svg, .png, .pdf or .dot file name")
    if not shutil.which("dot"):
        raise GraphError("Graphviz's `dot` is not installed (Debian: graphviz); write a .dot file instead")
    result = subprocess.run(["dot", f"-T{fmt}", "-o", str(output)], input=dot, text=True, capture_output=True)
    if result.returncode != 0:
        raise GraphError(f"dot failed: {result.stderr.strip()}")
    return output
