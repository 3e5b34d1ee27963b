"""The workflow graph: order, reachability, what may run next, and what to re-run.

Pure functions over a sequence of nodes in file order; anything with an `id` and `depends_on` will do,
so the functions are tested without a workflow file. Order is stable: among the nodes that are ready,
file order wins. Every function except `find_cycle` expects an acyclic graph (`schema` checks it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar


class Vertex(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def depends_on(self) -> Sequence[str]: ...


V = TypeVar("V", bound=Vertex)


def topological_order(nodes: Sequence[V]) -> list[V]:
    """Dependencies first; among nodes whose dependencies are placed, the earliest in the file."""
    placed: set[str] = set()
    order: list[V] = []
    while len(order) < len(nodes):
        ready_now = [n for n in nodes if n.id not in placed and placed.issuperset(n.depends_on)]
        if not ready_now:
            raise ValueError(f"the graph has a cycle: {' → '.join(find_cycle(nodes) or ())}")
        order.append(ready_now[0])
        placed.add(ready_now[0].id)
    return order


def find_cycle(nodes: Sequence[Vertex]) -> list[str] | None:
    """A dependency cycle as a path that ends where it starts (`[a, b, a]`), or None.

    Dependencies on ids that do not exist are ignored here; reporting them is the schema's job."""
    edges = {n.id: list(n.depends_on) for n in nodes}
    finished: set[str] = set()
    for start in edges:
        if cycle := _cycle_from(start, edges, finished, []):
            return cycle
    return None


def _cycle_from(node: str, edges: Mapping[str, list[str]], finished: set[str], path: list[str]) -> list[str]:
    if node in path:
        return [*path[path.index(node) :], node]
    if node in finished or node not in edges:
        return []
    path.append(node)
    for dependency in edges[node]:
        if cycle := _cycle_from(dependency, edges, finished, path):
            return cycle
    path.pop()
    finished.add(node)
    return []


def ancestors(nodes: Sequence[Vertex], node_id: str) -> set[str]:
    """Every node `node_id` depends on, directly or through others (itself excluded)."""
    edges = {n.id: tuple(n.depends_on) for n in nodes}
    return _reach(edges, edges.get(node_id, ()))


def descendants(nodes: Sequence[Vertex], node_id: str) -> set[str]:
    """Every node that depends on `node_id`, directly or through others (itself excluded)."""
    dependents: dict[str, list[str]] = {n.id: [] for n in nodes}
    for n in nodes:
        for dependency in n.depends_on:
            dependents.setdefault(dependency, []).append(n.id)
    return _reach(dependents, dependents.get(node_id, ()))


def _reach(edges: Mapping[str, Sequence[str]], start: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(start)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(edges.get(current, ()))
    return seen


def ready(nodes: Sequence[V], done: Collection[str], failed: Collection[str]) -> list[V]:
    """Nodes not yet done or failed whose dependencies are all done, in file order.

    A node skipped by its `when` counts as done. A node below a failure never becomes ready: see
    `blocked`."""
    return [
        n for n in nodes if n.id not in done and n.id not in failed and all(d in done for d in n.depends_on)
    ]


def blocked(nodes: Sequence[Vertex], failed: Iterable[str]) -> set[str]:
    """Nodes that cannot run because something they depend on failed."""
    return set().union(*(descendants(nodes, f) for f in failed))


def resume_set(nodes: Sequence[Vertex], failed_id: str) -> set[str]:
    """What `/archon retry` re-runs: the failed node and everything below it. The outputs of all
    other done nodes are kept."""
    return {failed_id} | descendants(nodes, failed_id)


def loop_body(nodes: Sequence[V], node_id: str, back_to: str) -> list[V]:
    """What a `loop` runs again when its `until` is false, in order: `back_to`, the nodes between it
    and `node_id`, and `node_id` itself."""
    between = descendants(nodes, back_to) & ancestors(nodes, node_id)
    body = {back_to, node_id} | between
    return [n for n in topological_order(nodes) if n.id in body]
