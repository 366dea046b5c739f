"""The lesson tab: electron-phonon renormalisation in one page and four exercises the
app works out live on the tab's structure and models (``app.lesson``)."""

from __future__ import annotations

import panel as pn
import param

from app.components.context import Context
from app.formulas import math_markdown
from app.lesson import EXERCISES, LESSON


class Lesson(pn.viewable.Viewer):
    """``answers``: {exercise number: Markdown answer}, filled as they are worked out."""

    ctx = param.ClassSelector(class_=Context, constant=True, precedence=-1)
    subject = param.Parameter(precedence=-1, doc="the tab's Session, on which the exercises compute")
    answers = param.Dict(default={}, precedence=-1)

    def __init__(self, **params):
        super().__init__(**params)
        self.futures: dict = {}

    def _answer(self, number: int, text: str) -> None:
        self.answers = {**self.answers, number: text}

    def solve(self, number: int) -> None:
        """Work out exercise ``number`` (app.lesson.EXERCISES) in the background."""
        exercise = EXERCISES[number]
        self._answer(number, "computing ...")

        def job():
            try:
                text = exercise.solve(self.subject)
            except Exception as err:
                text = f"Could not compute this here: {type(err).__name__}: {err}"
            self.ctx.dispatch(lambda: self._answer(number, text))

        self.futures[number] = self.ctx.submit(job)

    def __panel__(self):
        rows = []
        for number, exercise in enumerate(EXERCISES):
            button = pn.widgets.Button(name="Compute", button_type="primary", css_classes=[f"mlepi-exercise-{number}"])
            button.on_click(lambda _, n=number: self.solve(n))
            answer = math_markdown(pn.bind(lambda a, n=number: a.get(n, ""), self.param.answers),
                                   css_classes=[f"mlepi-answer-{number}"])
            rows.append(pn.Column(math_markdown(f"**{number + 1}. {exercise.title}** {exercise.question}"),
                                  button, answer))
        return pn.Column(math_markdown(LESSON, css_classes=["mlepi-lesson"]), *rows, css_classes=["mlepi-lesson-tab"])
