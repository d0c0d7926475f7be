"""The template library: stored rules, so that a user sends `e2e_delay NF1 NF2` or `max_cpu NF1`.

The draft (section 7.1) suggests it: "R1-R6 can be stored into a library of the query engine as
a template e2e_delay, so that the users only need to send a simple query request, e.g.
e2e_delay NF1 NF2".  Each template is rules in the language itself, the draft's where it gives
them; a query names the template and its arguments, and the template's goal predicate takes
them plus the result variables (`e2e_delay(NF1, NF2, P)`).

The rules are the draft's, as written, with one addition: `link` is read as a directed edge
(the draft's own F2 lists each link once, in the forwarding direction).  The rules, not the
prose, decide: for Figure 1, `in_leaf(NF1, Y)` holds for vm2 and vm7 (vm2 has no incoming link
in F2 either), where the prose names vm7 only; `f_e2e_delay` then reports the largest delay
over the ingress x egress pairs (see `monitor.functions`).
"""

from __future__ import annotations

from dataclasses import dataclass

TRAVERSAL = """
R1: child(X, Y) <= sub(X, Z), child(Z, Y)
R2: child(X, Y) <= sub(X, Y)
R3: leaf(X, Y) <= child(X, Y), ~sub(Y, Z)
"""

SOURCES: dict[str, tuple[str, str]] = {  # name -> (rules, what it answers)
    "e2e_delay": (TRAVERSAL + """
R4: in_leaf(X, Y) <= leaf(X, Y) & ~link(M, Y)
R5: out_leaf(X, Y) <= leaf(X, Y) & ~link(Y, M)
R6: e2e_delay(S, D, P) <= link(S, D), P == f_e2e_delay(in_leaf(S, Y), out_leaf(D, Z))
""", "end-to-end delay (ms, one way) from the ingress leaves of S to the egress leaves of D (draft 7.1)"),
    "max_cpu": (TRAVERSAL + """
R4: max_cpu(X, C) <= leaf(X, Y), C == f_max_cpu(leaf(X, Y))
""", "highest CPU usage among the leaves of X (draft 7.2)"),
    "mean_cpu": (TRAVERSAL + """
R5: mean_cpu(X, C) <= leaf(X, Y), C == f_mean_cpu(leaf(X, Y))
""", "mean CPU usage of the leaves of X (draft 7.2)"),
    "min_cpu": (TRAVERSAL + """
R4: min_cpu(X, C) <= leaf(X, Y), C == f_min_cpu(leaf(X, Y))
""", "lowest CPU usage among the leaves of X"),
    "top_cpu": (TRAVERSAL + """
R4: leaf_cpu(X, Y, C) <= leaf(X, Y), C == f_cpu(Y)
R5: top_cpu(X, T) <= leaf(X, Y), T == topn(3, leaf_cpu(X, Y, C))
""", "the 3 leaves of X with the highest CPU usage, with their usage (draft 7.2's TopN)"),
    "leaf": (TRAVERSAL, "the leaves (virtual machines) of X"),
    "delay": ("""
R1: delay(A, B, P) <= node(A), node(B), P == f_delay(A, B)
""", "the measured one-way delay (ms) between two leaves"),
}


@dataclass(frozen=True)
class Template:
    name: str
    rules: str
    description: str


class TemplateLibrary:
    """Named rule sets; `rules_for(name)` gives the text to parse with the query's program."""

    def __init__(self) -> None:
        self.templates: dict[str, Template] = {}

    @classmethod
    def default(cls) -> TemplateLibrary:
        library = cls()
        for name, (rules, description) in SOURCES.items():
            library.add(name, rules, description)
        return library

    def add(self, name: str, rules: str, description: str = "") -> None:
        self.templates[name] = Template(name, rules, description)

    def get(self, name: str) -> Template | None:
        return self.templates.get(name)

    def names(self) -> list[str]:
        return sorted(self.templates)
