"""The dashboard's view state in the page URL: a Session's settings as short, readable
query parameters (``?structure=AB&T=300&samples=40&...``) and back, so that a link
reproduces a view; bad parameters are reported, never fatal."""

from __future__ import annotations

import html
import math
from urllib.parse import urlencode

from app.catalogue import GALLERY, UPLOADED, electron_choices, force_choices, label_of, model_code


# each linked parameter and the panel of a Session that owns it
OWNERS = {"structure": "system", "supercell": "system", "forces": "system", "electrons": "system",
          "temperature": "monte_carlo", "samples": "monte_carlo", "seed": "monte_carlo",
          "antithetic": "monte_carlo", "sampling": "monte_carlo", "estimator": "monte_carlo", "path_points": "monte_carlo", "unit": "phonons", "show_reference": "phonons", "mode": "phonons",
          "presentation": "ctx", "show_layers": "ctx", "opened": "runs"}


def view_query(session) -> dict[str, str]:
    """The whole view state of ``session`` as URL query parameters; an uploaded structure
    cannot travel in a link and is left out."""
    system, mc, ph, ctx = session.system, session.monte_carlo, session.phonons, session.ctx
    q = {"supercell": str(system.supercell), "forces": model_code(force_choices()[system.forces]),
         "electrons": model_code(electron_choices()[system.electrons]),
         "T": f"{float(mc.temperature):g}", "samples": str(mc.samples), "seed": str(mc.seed),
         "antithetic": str(int(mc.antithetic)), "unit": ph.unit,
         "reference": str(int(ph.show_reference)), "presentation": str(int(ctx.presentation)),
         "layers": str(int(ctx.show_layers))}
    if system.structure != UPLOADED:
        q = {"structure": GALLERY[system.structure], **q}
    if ph.mode is not None:
        q["mode"] = f"{ph.mode[0]},{ph.mode[1]}"
    if mc.sampling != "mc":
        q["sampling"] = mc.sampling
    if mc.estimator != mc.param.estimator.default:
        q["estimator"] = mc.estimator
    if mc.path_points != mc.param.path_points.default:
        q["path"] = str(mc.path_points)
    if session.runs.opened:
        q["runs"] = ",".join(session.runs.opened)
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
    as its text and validated by its ``param`` parameter in ``parameters`` ({name: Parameter})."""
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
        "runs": ("opened", lambda v: [x for x in v.split(",") if x]),
        "sampling": ("sampling", str),
        "estimator": ("estimator", str),
        "path": ("path_points", int),
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


def apply_query(session, query: dict) -> list[str]:
    """Set ``session``'s view from URL query parameters; valid ones are applied, invalid ones
    left as they are and returned (also shown as the session's message)."""
    values, problems = parse_query(query, session.parameters())
    system = session.system
    if "structure" in values and values["structure"] != system.structure:
        system.structure = values.pop("structure")  # first: a new structure resets the view
    values.pop("structure", None)
    if values.get("antithetic") and "samples" in values:  # set together: even counts are checked
        session.monte_carlo.param.update(samples=values.pop("samples"), antithetic=values.pop("antithetic"))
    for owner in dict.fromkeys(OWNERS.values()):
        getattr(session, owner).param.update(**{k: v for k, v in values.items() if OWNERS[k] == owner})
    if problems:
        # shown as Markdown: a link's text is escaped so that it reads as text, never as markup
        session.ctx.message = "Some link parameters were not used: " + html.escape("; ".join(problems))
    return problems


class URLState:
    """The page's link follows the view: a pasted link sets every control once, then each
    change of a linked parameter rewrites the link's query."""

    def __init__(self, session, location):
        self.session, self.location = session, location
        for owner in dict.fromkeys(OWNERS.values()):
            names = [k for k, v in OWNERS.items() if v == owner]
            getattr(session, owner).param.watch(self.write, names)

    @staticmethod
    def restore(session, arguments: dict) -> None:
        """A pasted link: its query (the request's arguments, the link's own text) sets every
        control before the page is built, so that the page is drawn restored."""
        if arguments:
            apply_query(session, arguments)

    def write(self, *_) -> None:
        if self.location is not None:
            self.location.search = "?" + urlencode(view_query(self.session))
