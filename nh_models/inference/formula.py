"""A potential written as a formula in q, read as data: never `eval`, never `exec`.

    V = formula_potential("8*(q-0.5)**2")      # a callable: V(q array) -> array
    V(np.linspace(0, 1, 100))

The text is parsed by Python's `ast` (parsing runs nothing) and every node is checked
against a strict whitelist before anything is evaluated: numbers, the name `q`, the
operators + - * / ** and unary -/+, and calls of the functions in FUNCTIONS by name
with one argument. Anything else (attributes, subscripts, other names, keyword
arguments, strings, lambdas, comprehensions, `__import__('os')`...) is an NHError
naming what is not allowed; the tree is then evaluated by a small interpreter over
NumPy arrays. The same interpreter evaluates at complex q, which gives the exact
derivative V'(q) = Im V(q + i h) / h (complex step, h = 1e-30) for `--check`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np

from nh_data.errors import NHError

MAX_LENGTH = 500  # characters
MAX_NODES = 200  # AST nodes
MAX_EXPONENT = 64.0  # |constant exponent| above this is refused (overflow bait)


def _abs(z):
    # analytic continuation of |x| for the complex step: sign of the real part
    return np.where(np.real(z) >= 0, z, -z) if np.iscomplexobj(z) else np.abs(z)


FUNCTIONS: dict[str, Callable] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "tanh": np.tanh,
    "cosh": np.cosh,
    "sinh": np.sinh,
    "abs": _abs,
}
CONSTANTS = {"pi": np.pi, "e": np.e}
_BINOPS = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}
_UNARY = {ast.USub: np.negative, ast.UAdd: np.positive}


def _check(node: ast.AST, text: str) -> None:
    """Raise NHError unless every node of the tree is on the whitelist."""
    if isinstance(node, ast.Expression):
        return _check(node.body, text)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise NHError(f"formula {text!r}: only numbers are allowed as constants, got {node.value!r}")
        return None
    if isinstance(node, ast.Name):
        if node.id != "q" and node.id not in CONSTANTS:
            raise NHError(f"formula {text!r}: unknown name {node.id!r}; the variable is q (constants: pi, e)")
        return None
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise NHError(f"formula {text!r}: operator {type(node.op).__name__} is not allowed (+ - * / **)")
        if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant):
            v = node.right.value
            if isinstance(v, (int, float)) and abs(v) > MAX_EXPONENT:
                raise NHError(f"formula {text!r}: exponent {v!r} is too large (at most {MAX_EXPONENT:g})")
        _check(node.left, text)
        return _check(node.right, text)
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise NHError(f"formula {text!r}: operator {type(node.op).__name__} is not allowed")
        return _check(node.operand, text)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            what = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise NHError(
                f"formula {text!r}: function {what!r} is not allowed; allowed: {', '.join(FUNCTIONS)}"
            )
        if node.keywords or len(node.args) != 1:
            raise NHError(f"formula {text!r}: {node.func.id}() takes exactly one argument")
        return _check(node.args[0], text)
    raise NHError(f"formula {text!r}: {type(node).__name__} is not allowed in a formula")


def parse_formula(text: str) -> ast.Expression:
    """The checked syntax tree of `text` (NHError when malformed or not on the whitelist)."""
    if not isinstance(text, str) or not text.strip():
        raise NHError("formula is empty")
    if len(text) > MAX_LENGTH:
        raise NHError(f"formula is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise NHError(
            f"formula {text!r} is malformed ({exc.msg if isinstance(exc, SyntaxError) else exc})"
        ) from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise NHError(f"formula {text!r} is too long (more than {MAX_NODES} terms)")
    _check(tree, text)
    return tree


def _eval(node: ast.AST, q):
    if isinstance(node, ast.Expression):
        return _eval(node.body, q)
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return q if node.id == "q" else CONSTANTS[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, q), _eval(node.right, q))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, q))
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](_eval(node.args[0], q))
    raise AssertionError(f"unchecked node {type(node).__name__}")  # _check refused it already


class Formula:
    """A checked formula in q: `V(q)` and its exact derivative `dV(q)` on arrays."""

    def __init__(self, text: str):
        self.text = text.strip()
        self._tree = parse_formula(text)

    def __call__(self, q) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        with np.errstate(all="ignore"):  # the caller checks finiteness
            out = _eval(self._tree, q)
        return np.broadcast_to(np.asarray(out, dtype=np.float64), q.shape).copy()

    def dV(self, q) -> np.ndarray:
        """V'(q) by the complex step: exact to round-off for the analytic functions."""
        q = np.asarray(q, dtype=np.float64)
        h = 1e-30
        with np.errstate(all="ignore"):
            out = _eval(self._tree, q + 1j * h)
        return np.broadcast_to(np.imag(np.asarray(out, dtype=np.complex128)) / h, q.shape).copy()


def formula_potential(text: str) -> Formula:
    """The potential of a formula in q (NHError for anything outside the whitelist)."""
    return Formula(text)
