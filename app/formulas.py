"""Markdown with formulas for the dashboard: ``$...$`` and ``$$...$$`` are kept whole
(Markdown's escapes would eat their backslashes) and handed to the MathJax that the
server itself serves (Bokeh's bundled copy: nothing is fetched from elsewhere), which
typesets ``\\(...\\)`` inline and ``$$...$$`` as a display."""

from __future__ import annotations

import functools
from html import escape

import panel as pn
from mdit_py_plugins.dollarmath import dollarmath_plugin


def _delimit(content: str, options: dict) -> str:
    tex = escape(content.strip(), quote=False)
    return f"$${tex}$$" if options.get("display_mode") else f"\\({tex}\\)"


MATH = functools.partial(dollarmath_plugin, renderer=_delimit)


def math_markdown(text: str = "", **params) -> pn.pane.Markdown:
    """A Markdown pane whose ``$`` formulas are typeset (offline)."""
    return pn.pane.Markdown(text, plugins=[MATH], **params)
