"""How a lineage is shown: a rich Tree for the terminal, Graphviz DOT (`--dot`); JSON is
`Lineage.to_json`. Labels come from untrusted metadata, so they are escaped and cut short.

The tree places each snapshot once, under the closest descendant that names it (breadth first, so its
nesting is its distance from the root); later references to it say so instead of repeating it.
"""

from __future__ import annotations

from collections import deque

from rich.markup import escape
from rich.tree import Tree

from node.lineage import INVALID, MISSING, NOT_FOLLOWED, OK, UNREADABLE, Ancestor, Edge, Lineage
from node.status import short_id

_STYLE = {MISSING: "yellow", UNREADABLE: "red", INVALID: "red", NOT_FOLLOWED: "dim"}


def short_cid(cid: str) -> str:
    return "…" + cid[-10:] if len(cid) > 10 else cid


def _edge_text(edge: Edge | None) -> str:
    if edge is None:
        return ""
    parts = ["self" if edge.self_parent else "merged"]
    if edge.weight is not None:
        parts.append(f"weight {edge.weight:.2f}")
    if edge.similarity is not None:
        parts.append(f"similarity {edge.similarity:.3f}")
    return "(" + ", ".join(parts) + ") "


def _facts(node: Ancestor) -> str:
    if node.status != OK:
        return f"{node.status}: {node.note}" if node.note else node.status
    parts = [f"publisher {short_id(node.peer_id)}", f"round {'?' if node.round is None else node.round}",
             f"{'?' if node.samples is None else node.samples} samples",
             "no DP" if node.dp_epsilon is None else f"ε {node.dp_epsilon:.2f}"]
    if node.note:
        parts.append(node.note)
    return "  ".join(parts)


def label(node: Ancestor, edge: Edge | None) -> str:
    """One line of the tree (rich markup)."""
    style = _STYLE.get(node.status, "")
    text = (f"{escape(_edge_text(edge))}[bold]{escape(short_cid(node.cid))}[/bold]  "
            f"{escape(_facts(node)[:300])}")
    return f"[{style}]{text}[/{style}]" if style else text


def tree(lineage: Lineage) -> Tree:
    root = lineage.nodes[lineage.root]
    top = Tree(label(root, None))
    placed = {root.cid}
    queue: deque[tuple[Ancestor, Tree]] = deque([(root, top)])
    while queue:
        node, branch = queue.popleft()
        beyond = 0
        for edge in node.parents:
            parent = lineage.nodes[edge.cid]
            if edge.cycle:
                branch.add(f"[red]{escape(_edge_text(edge))}{escape(short_cid(edge.cid))}: "
                           "a cycle, back to a snapshot on this path[/red]")
            elif edge.cid in placed:
                branch.add(f"{escape(_edge_text(edge))}{escape(short_cid(edge.cid))} [dim](listed once, "
                           "elsewhere in this tree)[/dim]")
            elif parent.status == NOT_FOLLOWED and parent.depth > lineage.depth:
                beyond += 1
            else:
                placed.add(edge.cid)
                queue.append((parent, branch.add(label(parent, edge))))
        if beyond:
            branch.add(f"[dim]… {beyond} parent(s) beyond --depth {lineage.depth}[/dim]")
        if node.parents_dropped:
            branch.add(f"[dim]… {node.parents_dropped} more parent(s) not followed[/dim]")
    return top


def _dot_str(text: str) -> str:
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(lineage: Lineage) -> str:
    """Graphviz DOT: one box per snapshot, an arrow from each snapshot to each parent (dashed: self)."""
    lines = ["digraph lineage {", "  rankdir=BT;", "  node [shape=box, fontname=monospace];"]
    for node in lineage.nodes.values():
        color = {OK: "black", MISSING: "orange", NOT_FOLLOWED: "gray"}.get(node.status, "red")
        parts = [short_cid(node.cid), *_facts(node)[:200].split("  ")]
        text = "\\n".join(_dot_str(part)[1:-1] for part in parts)
        lines.append(f"  {_dot_str(node.cid)} [label=\"{text}\", color={color}];")
    for node in lineage.nodes.values():
        for edge in node.parents:
            attrs = [f"label={_dot_str(_edge_text(edge).strip(' ()'))}"]
            attrs += ["style=dashed"] if edge.self_parent else []
            attrs += ["color=red"] if edge.cycle else []
            lines.append(f"  {_dot_str(node.cid)} -> {_dot_str(edge.cid)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines)
