"""Keyword-only arguments beyond three parameters (../shared/DESIGN.md, rule 8).

A call such as ``f(a, b, c, d)`` silently breaks when two parameters of one type swap places;
past three, the names must be spelled at the call site. This walks every module under
services/ (not the generated protobuf code) and lists each function or method that still takes
more than three positional parameters.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
GENERATED = SERVICES / "common" / "generated"
MAX_POSITIONAL = 3

# Dunder methods are called by the language, which passes their arguments positionally:
# `__exit__(self, exc_type, exc, tb)` and `__aexit__` cannot be keyword-only. Every other
# dunder that services/ defines takes three positionals or fewer, so this exempts by name only
# the ones whose positional signature Python mandates — `__init__` and friends stay checked.
LANGUAGE_MANDATED = frozenset({"__exit__", "__aexit__"})

# Functions a third-party library calls positionally, by qualified name ("module:Qual.name"),
# each with the reason. Add an entry only when a library's callback signature forces it.
THIRD_PARTY_CALLBACKS: dict[str, str] = {
    "services.compute.virt.libvirt.host:LibvirtHost.watch_agents.on_event": (
        "libvirt calls a domainEventRegisterAny callback as cb(conn, dom, state, reason, opaque)"
    ),
}


def positional_count(fn: ast.FunctionDef | ast.AsyncFunctionDef, *, is_method: bool) -> int:
    """Positional-only + positional-or-keyword parameters, `*args` as one; self/cls not."""
    params = [*fn.args.posonlyargs, *fn.args.args]
    if is_method and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    return len(params) + (1 if fn.args.vararg is not None else 0)


def offenders_in(
    source: str, *, module: str, exempt: Mapping[str, str] = THIRD_PARTY_CALLBACKS
) -> list[tuple[int, str]]:
    """(line, qualified name) of each function with too many positional parameters."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, *, scope: tuple[str, ...], in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, scope=(*scope, child.name), in_class=True)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = ".".join((*scope, child.name))
                too_many = positional_count(child, is_method=in_class) > MAX_POSITIONAL
                excused = (in_class and child.name in LANGUAGE_MANDATED) or (
                    f"{module}:{qualname}" in exempt
                )
                if too_many and not excused:
                    found.append((child.lineno, qualname))
                visit(child, scope=(*scope, child.name), in_class=False)
            else:
                visit(child, scope=scope, in_class=in_class)

    visit(ast.parse(source), scope=(), in_class=False)
    return found


def service_modules() -> list[Path]:
    return sorted(p for p in SERVICES.rglob("*.py") if GENERATED not in p.parents)


def test_no_function_in_services_takes_more_than_three_positional_parameters() -> None:
    modules = service_modules()
    assert len(modules) > 50  # the walk found the tree, not an empty directory
    report = []
    for path in modules:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, name in offenders_in(path.read_text(), module=module):
            report.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not report, "make these keyword-only after the third parameter:\n" + "\n".join(report)


@pytest.mark.parametrize("entry", sorted(THIRD_PARTY_CALLBACKS))
def test_each_exemption_is_still_needed(entry: str) -> None:
    # A stale exemption (renamed, moved, or no longer positional) would quietly cover a future
    # function of the same name: each must still name a function the rule would flag.
    module, _, qualname = entry.partition(":")
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    flagged = offenders_in(path.read_text(), module=module, exempt={})
    assert qualname in [name for _, name in flagged]


# The checker itself, on small sources: each case must be caught or passed as stated.
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(a, b, c): pass", []),
        ("def f(a, b, c, d): pass", [(1, "f")]),
        ("def f(a, b, c, *, d, e): pass", []),
        ("def f(a, b, /, c, d): pass", [(1, "f")]),
        ("def f(a, b, c, *rest): pass", [(1, "f")]),
        ("def f(a, b, *rest, c): pass", []),
        ("async def f(a, b, c, d): pass", [(1, "f")]),
        ("class C:\n    def m(self, a, b, c): pass", []),
        ("class C:\n    def m(self, a, b, c, d): pass", [(2, "C.m")]),
        ("class C:\n    @classmethod\n    def m(cls, a, b, c): pass", []),
        ("class C:\n    @staticmethod\n    def m(a, b, c, d): pass", [(3, "C.m")]),
        ("class C:\n    def __init__(self, a, b, c, d): pass", [(2, "C.__init__")]),
        ("class C:\n    def __exit__(self, t, e, tb): pass", []),
        ("class C:\n    async def __aexit__(self, t, e, tb): pass", []),
        ("def __exit__(a, b, c, d): pass", [(1, "__exit__")]),  # not a method: not mandated
        ("def f():\n    def g(a, b, c, d): pass", [(2, "f.g")]),
        ("def f(self, a, b, c): pass", [(1, "f")]),  # `self` is free only in a class
        ("def f():\n    def cb(a, b, c, d): pass", []),  # exempt by qualified name below
    ],
)
def test_the_checker(source: str, expected: list[tuple[int, str]]) -> None:
    assert offenders_in(source, module="m", exempt={"m:f.cb": "a test callback"}) == expected
