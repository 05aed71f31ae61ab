"""Hypothesis strategies shared by the contract tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: Any JSON value: scalars, and lists and objects of them, nested.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)
