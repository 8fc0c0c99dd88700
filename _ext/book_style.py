"""Sphinx extension: the course's own look, one citation style, and nothing from another host.

- **Citations, one style.** The in-text citations and the reference list both read "Zhang et al., 2026":
  the pybtex formatting style ``authoryear`` (pybtex's ``plain`` entries, sorted by author, year and title)
  labels the list that way instead of pybtex's alpha labels ("[ZLL+26]"), with a/b suffixes when two entries
  would share a label ("Song et al., 2021a"); the referencing style ``author_year_labels`` is
  sphinxcontrib-bibtex's ``author_year`` whose year is the label's year, so the text says "2021a" too.
  ``_config.yml`` selects both (``bibtex_default_style: authoryear``,
  ``bibtex_reference_style: author_year_labels``).
- **Page elements.** ``_ext/css/repdiff.css`` styles the collapsed block of ``repdiff.checks`` and the note
  under a static explorer figure (``repdiff.widgets``); it is served from the site's ``_static``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinxcontrib.bibtex.plugin import register_plugin as register_bibtex_plugin
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle
from sphinxcontrib.bibtex.style.referencing.basic_author_year import (
    BasicAuthorYearParentheticalReferenceStyle,
    BasicAuthorYearTextualReferenceStyle,
)
from sphinxcontrib.bibtex.style.referencing.extra_author import ExtraAuthorReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_empty import ExtraEmptyReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_label import ExtraLabelReferenceStyle
from sphinxcontrib.bibtex.style.referencing.extra_year import ExtraYearReferenceStyle
from sphinxcontrib.bibtex.style.template import join, join2, node, post_text, pre_text, reference

CSS_DIR = Path(__file__).resolve().parent / "css"
CSS_FILE = "repdiff.css"


def _plain(text: str) -> str:
    """A BibTeX name or year without braces, accents macros or ties ("{\\\"O}zt{\\\"u}rk" -> "Ozturk")."""
    text = re.sub(r"\\[a-zA-Z]+\s*|\\.", "", text)
    return text.replace("{", "").replace("}", "").replace("~", " ").strip()


def author_year_label(entry: Any) -> str:
    """"Zhang et al., 2026" (3+ authors), "Kunin and Bloom, 2019" (2), "Efron, 2011" (1) for a pybtex entry."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if not names:
        who = _plain(entry.fields.get("organization", entry.fields.get("title", entry.key)))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {_plain(entry.fields.get('year', 'n.d.'))}"


class AuthorYearLabels(BaseLabelStyle):
    """Author-year labels; two entries with the same label get "2026a", "2026b" in list order."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year_label(e) for e in entries]
        counts, seen = Counter(labels), Counter()
        for label in labels:
            if counts[label] > 1:
                suffix = "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1
                yield label + suffix
            else:
                yield label


class AuthorYearStyle(PlainStyle):
    """pybtex's ``plain`` entries (sorted by author, year, title) with :class:`AuthorYearLabels`."""

    default_label_style = "authoryear"


@node
def label_year(children, data: dict) -> Text:
    """The year of the entry's author-year label ("2021a"): the in-text year matches the list's label."""
    assert not children
    return Text(str(data["formatted_entry"].label).rsplit(", ", 1)[-1])


class _Parenthetical(BasicAuthorYearParentheticalReferenceStyle):
    def inner(self, role_name: str):
        return join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[
            pre_text,
            reference[join(sep=self.author_year_sep)[
                self.person.author_or_editor_or_title(full="s" in role_name), label_year]],
            post_text,
        ]


class _Textual(BasicAuthorYearTextualReferenceStyle):
    def inner(self, role_name: str):
        return join(sep=self.text_reference_sep)[
            self.person.author_or_editor_or_title(full="s" in role_name),
            join[self.bracket.left,
                 join2(sep1=self.pre_text_sep, sep2=self.post_text_sep)[pre_text, reference[label_year], post_text],
                 self.bracket.right],
        ]


class AuthorYearLabelReferenceStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's ``author_year`` in-text style, with the year taken from the list's label."""

    def __post_init__(self) -> None:
        self.styles.extend([
            _Parenthetical(bracket=self.bracket_parenthetical, person=self.person,
                           author_year_sep=self.author_year_sep, pre_text_sep=self.pre_text_sep,
                           post_text_sep=self.post_text_sep),
            _Textual(bracket=self.bracket_textual, person=self.person, text_reference_sep=self.text_reference_sep,
                     pre_text_sep=self.pre_text_sep, post_text_sep=self.post_text_sep),
            ExtraAuthorReferenceStyle(bracket=self.bracket_author, person=self.person),
            ExtraLabelReferenceStyle(bracket=self.bracket_label),
            ExtraYearReferenceStyle(bracket=self.bracket_year),
            ExtraEmptyReferenceStyle(),
        ])
        super(AuthorYearReferenceStyle, self).__post_init__()


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
register_bibtex_plugin("sphinxcontrib.bibtex.style.referencing", "author_year_labels",
                       AuthorYearLabelReferenceStyle)


def _static_path(app: Sphinx, config: Config) -> None:
    if str(CSS_DIR) not in config.html_static_path:
        config.html_static_path.append(str(CSS_DIR))


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", _static_path)
    app.add_css_file(CSS_FILE)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
