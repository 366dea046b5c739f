"""The dashboard's view state in the page URL: a Session's settings as short, readable
query parameters (``?structure=AB&T=300&samples=40&...``) and back, so that a link
reproduces a view; bad parameters are reported, never fatal."""

from __future__ import annotations

import html
import math
from urllib.parse import parse_qsl

from app.catalogue import GALLERY, UPLOADED, electron_choices, force_choices, label_of, model_code


def view_query(session) -> dict[str, str]:
    """The whole view state of ``session`` as URL query parameters; an uploaded structure
    cannot travel in a link and is left out."""
    s = session
    q = {"supercell": str(s.supercell), "forces": model_code(force_choices()[s.forces]),
         "electrons": model_code(electron_choices()[s.electrons]),
         "T": f"{float(s.temperature):g}", "samples": str(s.samples), "seed": str(s.seed),
         "antithetic": str(int(s.antithetic)), "unit": s.unit,
         "reference": str(int(s.show_reference)), "presentation": str(int(s.presentation)),
         "layers": str(int(s.show_layers))}
    if s.structure != UPLOADED:
        q = {"structure": GALLERY[s.structure], **q}
    if s.mode is not None:
        q["mode"] = f"{s.mode[0]},{s.mode[1]}"
    return q


def _text(value) -> str:
    """A query value as the text of the link: Tornado hands over bytes, and Panel's
    ``location.query_params`` numbers (``0``, ``300``), floats, booleans and lists."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return str(value)


def flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return value == "1"


def number(value: str) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError("expected a finite number")
    return x


def mode(value: str) -> tuple[int, int]:
    parts = value.strip("()[]").split(",")
    if len(parts) != 2:
        raise ValueError("expected q-point,band")
    return int(parts[0]), int(parts[1])


def parse_query(query: dict, parameters) -> tuple[dict, list[str]]:
    """URL query parameters -> ({parameter: valid value}, [problems]). Values may be the
    link's text, Tornado's lists of bytes (a parameter given several times counts once) or
    Panel's parsed ``location.query_params`` (ints, floats, booleans); each is read back
    as its text and validated by its ``param`` parameter in ``parameters`` (a Session's
    ``.param``)."""
    query = {k: (v[-1] if isinstance(v, list) and v and all(isinstance(x, (bytes, str)) for x in v) else v)
             for k, v in query.items()}
    query = {k: _text(v) for k, v in query.items()}
    problems, values = [], {}
    by_code = {v: k for k, v in GALLERY.items()}
    converters = {
        "structure": ("structure", lambda v: by_code[v]),
        "supercell": ("supercell", int),
        "forces": ("forces", lambda v: label_of(force_choices(), v)),
        "electrons": ("electrons", lambda v: label_of(electron_choices(), v)),
        "T": ("temperature", number),
        "samples": ("samples", int),
        "seed": ("seed", int),
        "antithetic": ("antithetic", flag),
        "unit": ("unit", str),
        "reference": ("show_reference", flag),
        "presentation": ("presentation", flag),
        "layers": ("show_layers", flag),
        "mode": ("mode", mode),
    }
    for key, (name, convert) in converters.items():
        if key not in query:
            continue
        try:
            value = convert(query[key])
            parameters[name]._validate(value)
            values[name] = value
        except Exception as err:
            problems.append(f"{key}={query[key]!r}: {err}")
    return values, problems


def query_of(search: str) -> dict[str, str]:
    """The parameters of a URL's query string (``?a=1&b=x``) as the link spells them."""
    return dict(parse_qsl(search.lstrip("?"), keep_blank_values=True))


def apply_query(session, query: dict) -> list[str]:
    """Set ``session``'s view from URL query parameters; valid ones are applied, invalid ones
    left as they are and returned (also shown as the session's ``message``)."""
    values, problems = parse_query(query, session.param)
    if "structure" in values and values["structure"] != session.structure:
        session.structure = values.pop("structure")  # first: a new structure resets the view
    values.pop("structure", None)
    if values.get("antithetic") and "samples" in values:  # set together: even counts are checked
        session.param.update(samples=values.pop("samples"), antithetic=values.pop("antithetic"))
    session.param.update(**values)
    if problems:
        # shown as Markdown: a link's text is escaped so that it reads as text, never as markup
        session.message = "Some link parameters were not used: " + html.escape("; ".join(problems))
    return problems
